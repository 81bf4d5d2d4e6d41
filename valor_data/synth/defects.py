"""Defective clips, each made on purpose and labelled with what is wrong with it."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from valor_data.media.ffmpeg import run_ffmpeg
from valor_data.synth.render import RenderSpec, render

# file-level damage: the media is written, then broken (or never media at all)
BROKEN_FILES = ("zero_bytes", "truncated", "html_page", "corrupt")
# content defects: rendered that way
CONTENT = ("no_audio", "no_video", "black", "frozen", "uniform", "silent", "clipped_audio",
           "low_resolution", "low_fps", "low_bitrate", "too_short")
# copies of another clip of the corpus
DUPLICATES = ("duplicate_reencoded", "duplicate_rescaled")
DEFECTS = BROKEN_FILES + CONTENT + DUPLICATES

HTML_PAGE = b"""<!DOCTYPE html>
<html><head><title>Error 403 (Forbidden)</title></head>
<body><h1>403. That's an error.</h1><p>Your client does not have permission to get this file.</p></body></html>
"""


def adjust_spec(kind: str, spec: RenderSpec) -> RenderSpec:
    """The render settings a defect needs (clean clips and file damage keep ``spec``)."""
    changes = {
        "no_audio": dict(audio="none"),
        "no_video": dict(video="none"),
        "black": dict(video="black"),
        "frozen": dict(video="frozen"),
        "uniform": dict(video="uniform"),
        "silent": dict(audio="silent"),
        "clipped_audio": dict(audio="clipped"),
        "low_resolution": dict(width=96, height=72),
        "low_fps": dict(fps=4.0),
        "low_bitrate": dict(width=640, height=360, vcodec="h264", container="mp4", video_bitrate="10k"),
        "duplicate_reencoded": dict(container="mp4", vcodec="h264", acodec="aac"),
        "duplicate_rescaled": dict(container="mp4", vcodec="h264", acodec="aac"),
    }.get(kind, {})
    return replace(spec, **changes)


def produce(kind: str, spec: RenderSpec, target: Path) -> Path:
    """Write the clip of ``kind`` (clean, a content defect or a broken file) to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "zero_bytes":
        target.write_bytes(b"")
        return target
    if kind == "html_page":
        target.write_bytes(HTML_PAGE)
        return target
    render(spec, target)
    if kind == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: int(len(data) * 0.35)])
    elif kind == "corrupt":
        _scramble(target, random.Random(spec.seed))
    return target


def _scramble(path: Path, rng: random.Random) -> None:
    """Overwrite many small runs of bytes in the body: decode errors, intact container."""
    data = bytearray(path.read_bytes())
    lo, hi = int(len(data) * 0.2), int(len(data) * 0.95)
    for _ in range(60):
        at = rng.randrange(lo, max(lo + 1, hi - 256))
        data[at: at + 256] = bytes(rng.randrange(256) for _ in range(256))
    path.write_bytes(bytes(data))


def make_duplicate(kind: str, original: Path, target: Path) -> Path:
    """A near-copy of ``original``: re-encoded at another quality, or rescaled."""
    if kind == "duplicate_rescaled":
        video = ["-vf", "scale=trunc(iw*0.6/2)*2:trunc(ih*0.6/2)*2", "-crf", "26"]
    else:
        video = ["-crf", "34"]
    run_ffmpeg(["-y", "-i", str(original), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                *video, "-c:a", "aac", "-b:a", "64k", "-threads", "1", "-movflags", "+faststart",
                "-map_metadata", "-1", "-fflags", "+bitexact", "-f", "mp4", str(target)], timeout=300)
    return target
