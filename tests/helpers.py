"""Small builders for test inputs (CSV layouts, files, fetched work dirs)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow as pa

from valor_data.table import CLIP_SCHEMA, clip_row, to_table, write_table
from valor_data.workdir import Workdir

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


def tar_samples(tars: list[Path]) -> dict[str, dict[str, bytes]]:
    """Every sample of WebDataset ``tars``: {key: {extension: bytes}}, sorted by key."""
    samples: dict[str, dict[str, bytes]] = {}
    for path in tars:
        with tarfile.open(path) as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return dict(sorted(samples.items()))


def write_fetched(root: Path, samples: dict[str, dict[str, bytes]], audio_from: dict[str, str],
                  caption_from: dict[str, str], captions: bool = True) -> Workdir:
    """A fetched work dir of ``samples``: media, manifest (their captions, or none), fetch.parquet."""
    workdir = Workdir.create(root)
    rows = []
    for key, members in samples.items():
        meta = json.loads(members["json"])
        mp4, flac = workdir.media_path(key, "mp4"), workdir.media_path(key, "flac")
        mp4.parent.mkdir(parents=True, exist_ok=True)
        mp4.write_bytes(members["mp4"])
        flac.write_bytes(samples[audio_from.get(key, key)]["flac"])
        caption = json.loads(samples[caption_from.get(key, key)]["json"])["captions"]
        rows.append(clip_row(clip_id=key, source="audioset", subset="unbalanced_train", video_id=meta["video_id"],
                             start_s=0.0, end_s=meta["end_s"], captions=caption if captions else []))
    write_table(to_table(rows, CLIP_SCHEMA), workdir.manifest)
    write_table(pa.table({"clip_id": list(samples), "status": ["ok"] * len(samples)}), workdir.path("fetch.parquet"))
    return workdir
