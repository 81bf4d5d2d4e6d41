"""Small builders for test inputs (CSV layouts, files)."""

from __future__ import annotations

from pathlib import Path

OFFICIAL_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids={n}, num_segs={n}, num_unique_labels=3, num_positive_labels={n}\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def official_csv(path: Path, rows: list[str], declared: int | None = None) -> Path:
    """AudioSet's published layout: three comment lines, a space after each comma."""
    path.write_text(OFFICIAL_HEADER.format(n=len(rows) if declared is None else declared)
                    + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def header_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("YTID,start_seconds,end_seconds,positive_labels\n" + "".join(r + "\n" for r in rows),
                    encoding="utf-8")
    return path
