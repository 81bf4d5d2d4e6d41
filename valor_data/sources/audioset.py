"""AudioSet segment CSVs, in both layouts, to clip rows.

Official layout: three ``#`` comment lines (the second states ``num_segs=``), then
``YTID, start, end, "mid,mid"`` with a space after each comma. Header layout: a
``YTID,start_seconds,end_seconds,positive_labels`` header row. Rows that cannot be
trusted become rejects with file, line and reason.
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path

from valor_data.errors import ManifestError
from valor_data.ids import audioset_clip_id, is_youtube_id, valor_id
from valor_data.sources.common import Collected
from valor_data.sources.ontology import MID_RE, Ontology

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
    mids = [m.strip() for m in labels_txt.split(",") if m.strip()]
    if not mids:
        return "no_labels", "positive_labels is empty"
    for mid in mids:
        if not MID_RE.match(mid) or (onto.known and mid not in onto.names):
            return "unknown_label", f"unknown MID {mid!r}"
    return None


def read_segments(path: str | os.PathLike, collected: Collected, onto: Ontology,
                  subset: str | None = None, url_template: str = YOUTUBE_URL) -> tuple[int, int | None]:
    """Read one segments CSV into ``collected``; return (data rows seen, num_segs declared or None).

    Raises ManifestError when the file is not a segments CSV at all, or when its
    header declares ``num_segs=N`` and a different number of rows follows (truncated).
    """
    path = Path(path)
    subset = subset or subset_from_filename(path)
    declared, rows = None, 0
    try:
        fh = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ManifestError(f"{path}: {exc.strerror}") from None
    with fh:
        reader = csv.reader(fh, skipinitialspace=True)
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if rows == 0 and (row[0] == "#" or row[0].startswith("# ")):   # header comments only
                match = _NUM_SEGS_RE.search(",".join(row))
                declared = int(match.group(1)) if match else declared
                continue
            if rows == 0 and row[0].strip() == "YTID":
                continue
            rows += 1
            problem = _check_row(row, onto)
            if problem:
                collected.reject(subset, str(path), line, *problem, raw=",".join(row))
                continue
            ytid, start, end, labels = (c.strip() for c in row)
            start_s, end_s = float(start), float(end)
            mids = [m.strip() for m in labels.split(",") if m.strip()]
            collected.add_clip(
                f"{path}:{line}", clip_id=audioset_clip_id(ytid, start_s), subset=subset,
                video_id=ytid, url=url_template.format(video_id=ytid), start_s=start_s,
                end_s=end_s, labels=mids, label_names=[onto.name(m) for m in mids],
                valor_id=valor_id(ytid, start_s, end_s))
    if declared is not None and declared != rows:
        raise ManifestError(f"{path}: header declares num_segs={declared} but the file holds "
                            f"{rows} rows (truncated or altered download?)")
    return rows, declared
