"""Youku-mPLUG's published CSVs to clip rows.

Files and their columns (the ``:FILE`` column is a path relative to the download root):

- ``pretrain.csv``: ``video_id:FILE``, ``title``
- ``classification_{train,val,test}.csv``: ``video_id:FILE``, ``title``, ``label`` (a class name or index)
- ``retrieval_{train,val,test}.csv``: ``clip_name:FILE``, ``caption``
- ``captioning_{train,val,test}.csv``: ``video_id:FILE``, ``golden_caption`` (a Python list literal in val/test)

An optional checksum column (``sha256``, ``sha1`` or ``md5`` with a hex digest, or ``checksum``
as ``<algo>:<hex>``) goes to the ``checksum`` column; fetch verifies the downloaded file against it.
The published CSVs carry none; mirrors may add one.

Chinese text is kept byte for byte (titles and captions are never stripped or normalised; only
``golden_caption`` is read as a list literal). The CSV's own file name stays the source id.

Where the files come from (``--base-url``): the ``modelscope`` preset (ModelScope's public file
endpoint for ``modelscope/Youku-AliceMind``), any http(s) mirror that keeps the published layout
(``<base>/videos/<subset>/<file>``), or a local directory holding ``videos/`` (each row's URL is then
the file's absolute path, read in place without enabling file:// URLs). A held-out classification
split (val or test) whose every label is empty is the published form of withheld labels: its rows
are kept without a category instead of being rejected as ``no_label``.
"""

from __future__ import annotations

import ast
import csv
import functools
import io
import logging
import os
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from valor_data.errors import ManifestError
from valor_data.ids import hashed_clip_id
from valor_data.sources.common import Collected, url_problem
from valor_data.sources.reading import csv_header, csv_rows, open_lines
from valor_data.table import CHECKSUM_HEX, checksum_value

# The 45 categories, in the index order of Youku-mPLUG's classname.json.
CATEGORIES = [
    "翻唱", "电视剧剪辑", "电视剧周边（预告/杂谈）", "财经", "美发美妆", "萌娃日常", "传统文化",
    "少儿动漫", "医疗健康", "亲子育儿", "养生保健", "电影周边（预告/杂谈）", "篮球", "日常生活",
    "搞笑", "少儿才艺", "街舞", "广场舞", "学历教育", "房产装修", "美食制作", "竞技体育", "相声小品",
    "MV", "穿搭", "科技", "健身", "家居装饰", "纪录片", "三农", "职业职场", "游戏", "乐器演奏", "综艺",
    "电影剪辑", "美容护肤", "宠物", "生活百科", "旅游", "足球", "汽车", "动漫", "少儿玩具", "科学科普",
    "美食测评",
]
CATEGORY_INDEX = {name: i for i, name in enumerate(CATEGORIES)}

log = logging.getLogger(__name__)

# ModelScope publishes the files (dataset ``modelscope/Youku-AliceMind``, revision ``master``) under
# their ``:FILE`` paths (``videos/pretrain/<name>.flv``, ``videos/classification/...``); this is the
# public file endpoint its SDK builds (``HubApi.get_dataset_file_url``), with FilePath last.
MODELSCOPE_DATASET = "modelscope/Youku-AliceMind"
MODELSCOPE_BASE = f"https://modelscope.cn/api/v1/datasets/{MODELSCOPE_DATASET}/repo?Revision=master&FilePath="
BASE_PRESETS = {"modelscope": MODELSCOPE_BASE}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_KIND_RE = re.compile(r"^(pretrain|(classification|retrieval|captioning)_(train|val|test))$")
_TEXT_COLUMN = {"pretrain": "title", "classification": "title", "retrieval": "caption",
                "captioning": "golden_caption"}


def subset_from_filename(path: str | os.PathLike) -> str:
    """``classification_train.csv`` -> ``youku-classification-train``."""
    stem = Path(path).name.split(".", 1)[0]
    if not _KIND_RE.match(stem):
        raise ManifestError(f"{path}: not a Youku-mPLUG CSV name (pretrain.csv, "
                            "classification|retrieval|captioning_{train,val,test}.csv)")
    return "youku-" + stem.replace("_", "-")


def resolve_base(base: str) -> str:
    """The ``--base-url`` as rows will use it: a preset name (``modelscope``) expanded, an http(s) URL
    as given, or a local directory made absolute (its files are read in place: no file:// URLs)."""
    if not base:
        raise ManifestError("Youku-mPLUG needs --base-url: where the :FILE paths are served from "
                            f"(a preset: {', '.join(BASE_PRESETS)}; an http(s) URL; or a local directory)")
    base = BASE_PRESETS.get(base, base)
    parts = urlsplit(base)
    if parts.scheme in ("http", "https") and parts.netloc:
        problem = url_problem(base)
        if problem:
            raise ManifestError(f"--base-url: {problem}")
        return base
    if parts.scheme == "file":
        raise ManifestError(f"--base-url {base}: give the directory itself, not a file:// URL")
    path = Path(base).expanduser()
    if not path.is_dir():
        raise ManifestError(f"--base-url {base}: not an http(s) URL, a preset ({', '.join(BASE_PRESETS)}) "
                            "or an existing directory")
    return str(path.resolve())


def file_url(base_url: str, file: str) -> str:
    """Where a ``:FILE`` path is fetched from: the path under a local directory; else the base URL
    joined with the path percent-encoded (Chinese, spaces), appended as is to a base that ends in
    ``=`` (a query such as the ``modelscope`` preset's ``...&FilePath=``)."""
    if "://" not in base_url:            # a local directory (``resolve_base`` made it absolute)
        return os.path.join(base_url, file)
    if base_url.endswith("="):
        return base_url + quote(file, safe="/")
    return base_url.rstrip("/") + "/" + quote(file, safe="/")


def _bad_file(file: str) -> str | None:
    if not file:
        return "empty file name"
    if file.startswith(("/", "\\")) or "\\" in file or "\x00" in file or ":" in file:
        return f"not a relative file path: {file!r}"
    if any(part in ("..", ".") for part in file.split("/")):
        return f"path escapes the download root: {file!r}"
    return None


def parse_captions(text: str, literal: bool = False) -> list[str]:
    """A text cell as captions, kept byte for byte. With ``literal`` (``golden_caption``) a cell that
    starts with ``[`` is a list literal of strings: read token by token (never evaluated, no nesting,
    so no size of cell can exhaust the parser); ValueError when it is anything else."""
    if not text.strip():
        return []
    if literal and text.lstrip().startswith("["):
        return [v for v in _string_list(text.strip()) if v.strip()]
    return [text]


def _string_list(text: str) -> list[str]:
    """``['a', "b"]`` -> ``["a", "b"]``: brackets, commas and string literals only."""
    skip = (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT)
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type not in skip]
    except (tokenize.TokenError, SyntaxError) as exc:
        raise ValueError(f"not a list literal: {exc}") from None
    shape = "".join("s" if t.type == tokenize.STRING else t.string for t in tokens)
    if not re.fullmatch(r"\[(s(,s)*,?)?\]", shape):
        raise ValueError("golden_caption list must hold strings only")
    values = []
    for token in tokens:
        if token.type == tokenize.STRING:
            value = ast.literal_eval(token.string)     # one string literal; f-strings raise ValueError
            if not isinstance(value, str):
                raise ValueError("golden_caption list must hold strings only")
            values.append(value)
    return values


def parse_checksum(row: dict) -> str | None:
    """The row's checksum as ``<algo>:<hex>`` (None when the CSV has none); ValueError when malformed."""
    for algo in CHECKSUM_HEX:
        if (row.get(algo) or "").strip():
            return checksum_value(algo, row[algo])
    value = (row.get("checksum") or "").strip()
    if not value:
        return None
    algo, sep, digest = value.partition(":")
    if not sep:
        raise ValueError(f"checksum {value[:80]!r} is not <algo>:<hex>")
    return checksum_value(algo, digest)


def _category(label: str) -> tuple[str, int] | None:
    label = label.strip()
    if label in CATEGORY_INDEX:
        return label, CATEGORY_INDEX[label]
    if label.isdigit() and int(label) < len(CATEGORIES):
        return CATEGORIES[int(label)], int(label)
    return None


@dataclass(frozen=True)
class _File:
    """What every row of one Youku CSV shares."""

    path: str
    subset: str
    kind: str                 # pretrain | classification | retrieval | captioning
    file_col: str
    text_col: str
    base_url: str
    withheld: bool = False    # a held-out classification split published without labels


def read_youku_csv(path: str | os.PathLike, collected: Collected, base_url: str,
                   subset: str | None = None) -> int:
    """Read one Youku-mPLUG CSV into ``collected``; return the number of data rows."""
    path = Path(path)
    subset = subset or subset_from_filename(path)
    kind = subset.split("-")[1]
    file_col = "clip_name:FILE" if kind == "retrieval" else "video_id:FILE"
    text_col = _TEXT_COLUMN[kind]
    needed = [file_col, text_col] + (["label"] if kind == "classification" else [])
    held_out = kind == "classification" and not subset.endswith("train")
    rows = 0
    with open_lines(path) as lines:
        reader = csv.DictReader(lines)
        found = csv_header(reader, path)
        missing = [c for c in needed if c not in found]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {missing}; found {found}")
        spec = _File(str(path), subset, kind, file_col, text_col, base_url, held_out and not _has_labels(path))
        if spec.withheld:
            log.warning("%s: no row has a label: read as a held-out split whose labels are withheld "
                        "(clips kept without a category)", path)
        for line, row in csv_rows(reader, lines, path, collected, subset):
            rows += 1
            _read_row(row, spec, collected, line)
    return rows


def _has_labels(path: Path) -> bool:
    """Whether any row of a classification CSV has a label (rows that cannot be read are skipped)."""
    scratch = Collected("youku")
    with open_lines(path) as lines:
        reader = csv.DictReader(lines)
        return any((row.get("label") or "").strip() for _, row in csv_rows(reader, lines, path, scratch, None))


def _read_row(row: dict, spec: _File, collected: Collected, line: int) -> None:
    reject = functools.partial(collected.reject, spec.subset, spec.path, line,
                               raw=",".join(str(v) for v in row.values()))
    file = (row.get(spec.file_col) or "").strip()
    if _CONTROL.search(file):
        reject("bad_url", f"file name holds a control character (CR, LF, NUL, ...): {file[:80]!r}")
        return
    problem = _bad_file(file)
    if problem:
        reject("bad_file_name", problem)
        return
    try:
        captions = parse_captions(row.get(spec.text_col) or "", literal=spec.kind == "captioning")
    except ValueError as exc:
        reject("bad_caption", f"{spec.text_col}: {exc}")
        return
    try:
        checksum = parse_checksum(row)
    except ValueError as exc:
        reject("bad_checksum", str(exc))
        return
    hidden_ok = spec.kind == "captioning" and not spec.subset.endswith("train")
    if not captions and not hidden_ok:
        reject("no_caption", f"empty {spec.text_col}")
        return
    category, problem = _row_category(row, spec)
    if problem:
        reject(*problem)
        return
    collected.add_clip(
        f"{spec.path}:{line}", clip_id=hashed_clip_id(f"youku\x00{spec.subset}\x00{file}", file),
        subset=spec.subset, video_id=file, url=file_url(spec.base_url, file), captions=captions,
        language="zh", category=category[0] if category else None,
        category_index=category[1] if category else None, checksum=checksum)


def _row_category(row: dict, spec: _File) -> tuple[tuple[str, int] | None, tuple[str, str] | None]:
    """(category and index, None), or (None, (reason, detail)); an empty label in a split whose
    labels are withheld is no category and no problem."""
    if spec.kind != "classification":
        return None, None
    label = (row.get("label") or "").strip()
    detail = f"label {row.get('label')!r}"
    if not label:
        return None, None if spec.withheld else ("no_label", detail)
    category = _category(label)
    return (category, None) if category else (None, ("unknown_category", detail))
