"""Plain URL lists (csv, tsv, jsonl or parquet) to clip rows.

Required: a URL column (``url``, ``video_url`` or ``contentUrl``). Optional: a caption
(``caption``, ``text``, ``title``, ``desc``; or a list in ``captions``), ``start``/``end``
seconds (``start_s``, ``start_seconds``, ...) and an id (``id``, ``video_id``, ``key``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq

from valor_data.errors import ManifestError
from valor_data.ids import hashed_clip_id
from valor_data.sources.common import Collected

URL_KEYS = ("url", "video_url", "contentUrl")
CAPTION_KEYS = ("caption", "text", "title", "desc")
START_KEYS = ("start", "start_s", "start_seconds")
END_KEYS = ("end", "end_s", "end_seconds")
ID_KEYS = ("id", "video_id", "key")
SCHEMES = ("http", "https", "file")


def _first(row: dict, keys: tuple[str, ...]):
    for key in keys:
        value = row.get(key)
        if value is not None and value != "" and not (isinstance(value, float) and math.isnan(value)):
            return value
    return None


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) pairs from any supported format."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, row
    elif suffix in (".jsonl", ".json", ".ndjson"):
        with open(path, encoding="utf-8-sig") as fh:
            for i, text in enumerate(fh, start=1):
                if text.strip():
                    try:
                        value = json.loads(text)
                    except json.JSONDecodeError as exc:
                        value = {"__error__": f"not JSON: {exc.msg}", "__raw__": text}
                    yield i, value if isinstance(value, dict) else {"__error__": "not an object"}
    elif suffix in (".csv", ".tsv", ".txt"):
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            for row in reader:
                yield reader.line_num, row
    else:
        raise ManifestError(f"{path}: unsupported URL list format {suffix!r} (csv, tsv, jsonl, parquet)")


def _time(value) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"bad time {value!r}")
    return number


def _captions(row: dict) -> list[str]:
    listed = row.get("captions")
    if isinstance(listed, list):
        return [str(c) for c in listed if str(c).strip()]
    caption = _first(row, CAPTION_KEYS)
    return [str(caption)] if caption is not None else []


def read_url_list(path: str | os.PathLike, collected: Collected, subset: str = "urls") -> int:
    """Read one URL list into ``collected``; return the number of rows."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such file")
    rows = 0
    for line, row in _records(path):
        rows += 1
        raw = json.dumps(row, ensure_ascii=False, default=str)
        if "__error__" in row:
            collected.reject(subset, str(path), line, "bad_row", row["__error__"], row.get("__raw__", raw))
            continue
        url = str(_first(row, URL_KEYS) or "").strip()
        scheme = urlsplit(url).scheme.lower()
        if scheme not in SCHEMES or (scheme != "file" and not urlsplit(url).netloc):
            collected.reject(subset, str(path), line, "bad_url",
                             f"need an http(s) or file URL, got {url[:80]!r}", raw)
            continue
        try:
            start, end = _time(_first(row, START_KEYS)), _time(_first(row, END_KEYS))
        except (TypeError, ValueError) as exc:
            collected.reject(subset, str(path), line, "bad_time", str(exc), raw)
            continue
        if start is not None and end is not None and end <= start:
            collected.reject(subset, str(path), line, "bad_interval", f"end {end} <= start {start}", raw)
            continue
        source_id = str(_first(row, ID_KEYS) or url)
        collected.add_clip(
            f"{path}:{line}", clip_id=hashed_clip_id(f"urls\x00{url}\x00{start}\x00{end}", source_id),
            subset=subset, video_id=source_id, url=url, start_s=start, end_s=end,
            captions=_captions(row), language=row.get("language") or None)
    return rows
