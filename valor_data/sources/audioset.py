"""AudioSet segment CSVs, in both layouts, to clip rows.

Official layout: three ``#`` comment lines (the second states ``num_segs=``), then
``YTID, start, end, "mid,mid"`` with a space after each comma. Header layout: a
``YTID,start_seconds,end_seconds,positive_labels`` header row. Rows that cannot be
trusted become rejects with file, line and reason. Labels quoted twice by a CSV tool are read.
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path

from valor_data.ids import audioset_clip_id, is_youtube_id, valor_id
from valor_data.sources.common import Collected
from valor_data.sources.ontology import MID_RE, Ontology
from valor_data.sources.reading import csv_rows, open_lines

YOUTUBE_URL = "https://www.youtube.com/watch?v={video_id}"
_NUM_SEGS_RE = re.compile(r"num_segs=(\d+)")


def subset_from_filename(path: str | os.PathLike) -> str:
    """``balanced_train_segments.csv`` -> ``balanced_train``."""
    stem = Path(path).name.split(".", 1)[0]
    return stem[: -len("_segments")] if stem.endswith("_segments") else stem


def _parse_time(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_labels(text: str) -> list[str]:
    """The MIDs of a ``positive_labels`` cell. Quotes left around the list or a MID are dropped: a CSV
    tool that quotes the cell ``"/m/09x0r,/m/04rlf"`` again, after a space, leaves them in the value."""
    mids = (m.strip(' \t"') for m in text.strip(' \t"').split(","))
    return [m for m in mids if m]


def _check_row(row: list[str], onto: Ontology) -> tuple[str, str] | None:
    """(reason, detail) when a segment row cannot be trusted, else None."""
    if len(row) != 4:
        return "bad_column_count", f"expected 4 columns, found {len(row)}"
    ytid, start_txt, end_txt, labels_txt = (c.strip() for c in row)
    if not is_youtube_id(ytid):
        return "bad_video_id", f"not an 11-character YouTube id: {ytid!r}"
    start, end = _parse_time(start_txt), _parse_time(end_txt)
    if start is None or end is None:
        return "bad_time", f"times must be non-negative numbers: {start_txt!r}, {end_txt!r}"
    if end <= start:
        return "bad_interval", f"end {end} <= start {start}"
    mids = parse_labels(labels_txt)
    if not mids:
        return "no_labels", "positive_labels is empty"
    for mid in mids:
        if not MID_RE.match(mid) or (onto.known and mid not in onto.names):
            return "unknown_label", f"unknown MID {mid!r}"
    return None


def read_segments(path: str | os.PathLike, collected: Collected, onto: Ontology,
                  subset: str | None = None, url_template: str = YOUTUBE_URL) -> tuple[int, int | None]:
    """Read one segments CSV into ``collected``; return (data rows seen, num_segs declared or None).

    The caller compares the two (a subset of an official file keeps its header, so a mismatch
    is not always a truncation). Raises ManifestError when the file cannot be opened.
    """
    path = Path(path)
    subset = subset or subset_from_filename(path)
    declared, rows = None, 0
    with open_lines(path) as lines:
        reader = csv.reader(lines, skipinitialspace=True)
        for line, row in csv_rows(reader, lines, path, collected, subset):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if rows == 0 and (row[0] == "#" or row[0].startswith("# ")):   # header comments only
                match = _NUM_SEGS_RE.search(",".join(row))
                declared = int(match.group(1)) if match else declared
                continue
            if rows == 0 and row[0].strip() == "YTID":
                continue
            rows += 1
            _add_row(row, line, path, subset, collected, onto, url_template)
    return rows, declared


def _add_row(row: list[str], line: int, path: Path, subset: str, collected: Collected, onto: Ontology,
             url_template: str) -> None:
    problem = _check_row(row, onto)
    if problem:
        collected.reject(subset, str(path), line, *problem, raw=",".join(row))
        return
    ytid, start, end = (c.strip() for c in row[:3])
    start_s, end_s = float(start), float(end)
    mids = parse_labels(row[3])
    collected.add_clip(
        f"{path}:{line}", clip_id=audioset_clip_id(ytid, start_s), subset=subset,
        video_id=ytid, url=url_template.format(video_id=ytid), start_s=start_s,
        end_s=end_s, labels=mids, label_names=[onto.name(m) for m in mids],
        valor_id=valor_id(ytid, start_s, end_s))
