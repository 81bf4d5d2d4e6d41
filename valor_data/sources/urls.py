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

import pyarrow as pa
import pyarrow.parquet as pq

from valor_data.errors import ManifestError
from valor_data.ids import hashed_clip_id
from valor_data.sources.common import Collected, url_problem
from valor_data.sources.reading import csv_header, csv_rows, open_lines, parse_json

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


def _records(path: Path, collected: Collected, subset: str) -> Iterator[tuple[int, dict, str]]:
    """(line number, row, raw text) from any supported format; rows the format itself cannot
    read (bad JSON, invalid UTF-8, an oversized CSV field) become rejects here."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise ManifestError(f"{path}: cannot read Parquet: {exc}") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield i, row, json.dumps(row, ensure_ascii=False, default=str)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        yield from _json_lines(path, collected, subset)
    elif suffix in (".csv", ".tsv", ".txt"):
        with open_lines(path) as lines:
            reader = csv.DictReader(lines, delimiter="\t" if suffix == ".tsv" else ",")
            csv_header(reader, path)
            for line, row in csv_rows(reader, lines, path, collected, subset):
                yield line, row, json.dumps(row, ensure_ascii=False, default=str)
    else:
        raise ManifestError(f"{path}: unsupported URL list format {suffix!r} (csv, tsv, jsonl, parquet)")


def _json_lines(path: Path, collected: Collected, subset: str) -> Iterator[tuple[int, dict, str]]:
    with open_lines(path) as lines:
        for i, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            if i in lines.bad:
                collected.reject(subset, str(path), i, "bad_utf8", f"invalid UTF-8 at byte offset {lines.bad[i]}",
                                 text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
                continue
            value, error = parse_json(text)
            if error is None and not isinstance(value, dict):
                error = f"not an object: a JSON {type(value).__name__}"
            if error is not None:
                collected.reject(subset, str(path), i, "bad_row", error, text)
                continue
            yield i, value, text


def _time(value) -> float | None:
    """Seconds from a number or a numeric string (``true`` is not a number); ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"bad time {value!r}: not a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"bad time {value!r}")
    return number


def _captions(row: dict) -> list[str]:
    """The row's captions; ValueError for an entry that is not a string (null, a number, an object)."""
    listed = row.get("captions")
    if isinstance(listed, list):
        named = [(f"captions[{i}]", value) for i, value in enumerate(listed)]
    else:
        key = next((k for k in CAPTION_KEYS if _first(row, (k,)) is not None), None)
        named = [(key, row[key])] if key else []
    for name, value in named:
        if not isinstance(value, str):
            raise ValueError(f"{name} is {'null' if value is None else type(value).__name__}, not a string")
    return [value for _, value in named if value.strip()]


def _url(row: dict) -> tuple[str, str | None]:
    """(url, problem): an http(s) or file URL with nothing in it that needs percent-encoding."""
    value = _first(row, URL_KEYS)
    if not isinstance(value, str | None):
        return "", f"the URL is a {type(value).__name__}, not a string"
    url = (value or "").strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES or (parts.scheme.lower() != "file" and not parts.netloc):
        return url, f"need an http(s) or file URL, got {url[:80]!r}"
    return url, url_problem(url)


def _text_field(row: dict, keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(value as text or None, problem) for an id or language cell: objects and lists are not text."""
    value = _first(row, keys)
    if isinstance(value, dict | list):
        return None, f"{keys[0]} is a {type(value).__name__}, not a string"
    return (None if value is None else str(value)), None


def read_url_list(path: str | os.PathLike, collected: Collected, subset: str = "urls") -> int:
    """Read one URL list into ``collected``; return the number of rows."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such file")
    rows = 0
    for line, row, raw in _records(path, collected, subset):
        rows += 1
        _read_row(row, f"{path}", line, raw, collected, subset)
    return rows


def _read_row(row: dict, path: str, line: int, raw: str, collected: Collected, subset: str) -> None:
    url, problem = _url(row)
    if problem:
        collected.reject(subset, path, line, "bad_url", problem, raw)
        return
    try:
        start, end = _time(_first(row, START_KEYS)), _time(_first(row, END_KEYS))
    except (TypeError, ValueError) as exc:
        collected.reject(subset, path, line, "bad_time", str(exc), raw)
        return
    if start is not None and end is not None and end <= start:
        collected.reject(subset, path, line, "bad_interval", f"end {end} <= start {start}", raw)
        return
    try:
        captions = _captions(row)
    except ValueError as exc:
        collected.reject(subset, path, line, "bad_caption", str(exc), raw)
        return
    (source_id, id_problem), (language, lang_problem) = _text_field(row, ID_KEYS), _text_field(row, ("language",))
    if id_problem or lang_problem:
        collected.reject(subset, path, line, "bad_field", id_problem or lang_problem, raw)
        return
    source_id = source_id or url
    collected.add_clip(
        f"{path}:{line}", clip_id=hashed_clip_id(f"urls\x00{url}\x00{start}\x00{end}", source_id),
        subset=subset, video_id=source_id, url=url, start_s=start, end_s=end,
        captions=captions, language=language)
