"""Which files of a folder (``valor-data filter --media-dir``) are clips, decided by content.

A file with a common media extension is always a clip: if its bytes are not media, the
filter rejects it with the reason (``empty_file``, ``not_media``, ``unreadable``). Any other
file is a clip when FFmpeg can demux it into an audio or video stream (``.dv``, ``.mxf``,
no extension at all); otherwise it is skipped, and the skips are counted by reason.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av
import pyarrow as pa

from valor_data.errors import ValorError
from valor_data.ids import hashed_clip_id
from valor_data.media.probe import ProbeError, looks_like_text, open_media

MEDIA_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".ts", ".mts", ".m2ts", ".mpg",
                    ".mpeg", ".3gp", ".ogv", ".ogg", ".wmv", ".asf", ".m4a", ".mp3", ".wav", ".flac", ".opus",
                    ".dv", ".mxf"}
MAX_EXAMPLES = 3
PROBE_TIMEOUT_S = 10.0


@dataclass
class Skipped:
    """Files of the folder that are not clips: count and a few examples per reason."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, name: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(name)

    def lines(self) -> list[str]:
        if not self.counts:
            return []
        out = [f"  skipped {sum(self.counts.values()):,} files of --media-dir that are not audio or video:"]
        out += [f"    {reason}: {n:,} (e.g. {', '.join(self.examples[reason])})"
                for reason, n in sorted(self.counts.items())]
        return out


def not_media(path: Path) -> str | None:
    """Why FFmpeg finds no clip in ``path`` (None: it demuxes an audio or video stream)."""
    if path.stat().st_size == 0:
        return "empty file"
    with open(path, "rb") as fh:
        head = fh.read(512)
    if looks_like_text(head):
        return "text"
    try:
        with open_media(path, PROBE_TIMEOUT_S) as container:
            if container.format.name == "image2" or container.format.name.endswith("_pipe"):
                return "still image"
            if not container.streams.video and not container.streams.audio:
                kinds = sorted({s.type for s in container.streams}) or ["no"]
                return f"only {'/'.join(kinds)} streams"
    except ProbeError:
        return "no container FFmpeg can demux"
    except (av.FFmpegError, OSError) as exc:
        return f"unreadable ({type(exc).__name__})"
    return None


def folder_clips(media_dir: str | os.PathLike) -> tuple[pa.Table, Skipped]:
    """The clips under ``media_dir`` (clip_id, subset, path, requested_s) and what was skipped."""
    root = Path(media_dir).expanduser().resolve()
    if not root.is_dir():
        raise ValorError(f"not a folder: {media_dir}")
    paths, skipped = [], Skipped()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        reason = None if path.suffix.lower() in MEDIA_EXTENSIONS else not_media(path)
        if reason is None:
            paths.append(path)
        else:
            skipped.add(reason, path.relative_to(root).as_posix())
    ids = [hashed_clip_id(f"file:{p.relative_to(root).as_posix()}", p.name) for p in paths]
    table = pa.table({"clip_id": pa.array(ids, pa.string()), "subset": pa.nulls(len(ids), pa.string()),
                      "path": pa.array([str(p) for p in paths], pa.string()),
                      "requested_s": pa.nulls(len(ids), pa.float64())})
    return table, skipped
