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
"""

from __future__ import annotations

import ast
import csv
import os
import re
from pathlib import Path
from urllib.parse import quote

from valor_data.errors import ManifestError
from valor_data.ids import hashed_clip_id
from valor_data.sources.common import Collected
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


def file_url(base_url: str, file: str) -> str:
    """Join the base URL and a ``:FILE`` path, percent-encoding Chinese and spaces."""
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
    starts with ``[`` is a list literal of strings (read with ``ast.literal_eval``, never ``eval``)."""
    if not text.strip():
        return []
    if literal and text.lstrip().startswith("["):
        value = ast.literal_eval(text.strip())   # literals only; raises on anything else
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("golden_caption list must hold strings only")
        return [v for v in value if v.strip()]
    return [text]


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


def read_youku_csv(path: str | os.PathLike, collected: Collected, base_url: str,
                   subset: str | None = None) -> int:
    """Read one Youku-mPLUG CSV into ``collected``; return the number of data rows."""
    path = Path(path)
    subset = subset or subset_from_filename(path)
    kind = subset.split("-")[1]
    file_col = "clip_name:FILE" if kind == "retrieval" else "video_id:FILE"
    text_col = _TEXT_COLUMN[kind]
    needed = [file_col, text_col] + (["label"] if kind == "classification" else [])
    rows = 0
    try:
        fh = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ManifestError(f"{path}: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
        for row in reader:
            rows += 1
            line = reader.line_num
            raw = ",".join(str(v) for v in row.values())
            _read_row(row, kind, file_col, text_col, subset, collected, base_url, f"{path}", line, raw)
    return rows


def _read_row(row: dict, kind: str, file_col: str, text_col: str, subset: str,
              collected: Collected, base_url: str, path: str, line: int, raw: str) -> None:
    file = (row.get(file_col) or "").strip()
    problem = _bad_file(file)
    if problem:
        collected.reject(subset, path, line, "bad_file_name", problem, raw)
        return
    try:
        captions = parse_captions(row.get(text_col) or "", literal=kind == "captioning")
    except (ValueError, SyntaxError) as exc:
        collected.reject(subset, path, line, "bad_caption", f"{text_col}: {exc}", raw)
        return
    try:
        checksum = parse_checksum(row)
    except ValueError as exc:
        collected.reject(subset, path, line, "bad_checksum", str(exc), raw)
        return
    hidden_ok = kind == "captioning" and not subset.endswith("train")
    if not captions and not hidden_ok:
        collected.reject(subset, path, line, "no_caption", f"empty {text_col}", raw)
        return
    category = None
    if kind == "classification":
        category = _category(row.get("label") or "")
        if category is None:
            reason = "no_label" if not (row.get("label") or "").strip() else "unknown_category"
            collected.reject(subset, path, line, reason, f"label {row.get('label')!r}", raw)
            return
    collected.add_clip(
        f"{path}:{line}", clip_id=hashed_clip_id(f"youku\x00{subset}\x00{file}", file),
        subset=subset, video_id=file, url=file_url(base_url, file), captions=captions,
        language="zh", category=category[0] if category else None,
        category_index=category[1] if category else None, checksum=checksum)
