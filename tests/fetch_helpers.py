"""Small builders for the fetch tests on loopback: tiny videos, watch pages, manifests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.table import CLIP_SCHEMA, write_table
from valor_data.workdir import Workdir

UNPACED = {"videos_per_hour": 1e7, "min_gap_s": 0.0}     # loopback: no YouTube budget to respect


def write_videos(folder: Path, video_ids: list[str], seconds: float = 3.0) -> None:
    """``folder/media/<id>.mp4`` (160x120 test pattern + a tone) and ``folder/watch/<id>.html``
    (a page whose <video> yt-dlp's generic extractor finds)."""
    (folder / "media").mkdir(parents=True, exist_ok=True)
    (folder / "watch").mkdir(exist_ok=True)
    for video_id in video_ids:
        run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=12:duration={seconds}", "-f", "lavfi",
                    "-i", f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-c:a", "aac", "-shortest", str(folder / "media" / f"{video_id}.mp4")])
        (folder / "watch" / f"{video_id}.html").write_text(
            f'<!DOCTYPE html><html><body><video controls src="/media/{video_id}.mp4"></video></body></html>\n')


def write_manifest(workdir: Workdir, urls: dict[str, str], start: float = 0.0, end: float = 1.0) -> None:
    """An AudioSet-style manifest (``source`` audioset: the yt-dlp path) of ``{clip_id: url}``."""
    rows = [{"clip_id": clip_id, "source": "audioset", "subset": "eval", "video_id": clip_id[:11].ljust(11, "x"),
             "url": url, "start_s": start, "end_s": end} for clip_id, url in urls.items()]
    write_table(pa.Table.from_pylist(rows, schema=CLIP_SCHEMA), workdir.manifest)
