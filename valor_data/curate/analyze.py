"""Measure one clip: open it, read it once, turn what was read into metrics and a signature.

``analyze_clip`` never raises for a bad file: an unreadable file is a measurement
(``probe_error``), a clip that runs past ``timeout_s`` gets status ``timeout``, and an
unforeseen failure gets status ``error`` with its message. Each is a row.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from valor_data.curate import metrics, signature
from valor_data.curate.config import FilterConfig
from valor_data.distribute import Task
from valor_data.media.decode import THUMB_H, THUMB_W, Decoded, Problems, libav_errors, read_media
from valor_data.media.probe import MediaInfo, ProbeError, describe, open_media

log = logging.getLogger(__name__)

UNKNOWN_DURATION_STEP_S = 1.0    # without a declared duration, sample every second, then thin out
_F64, _I64, _I32, _STR, _BOOL = pa.float64(), pa.int64(), pa.int32(), pa.string(), pa.bool_()
# one row per clip and measuring run: W/quality/tasks/task-*.parquet
MEASURE_SCHEMA = pa.schema([
    ("clip_id", _STR), ("subset", _STR), ("path", _STR), ("requested_s", _F64),
    ("status", _STR), ("error", _STR), ("analysis_s", _F64),      # ok | timeout | missing | error
    ("probe_error", _STR), ("detail", _STR),                       # why it could not be opened / first error
    ("size_bytes", _I64), ("container", _STR), ("has_video", _BOOL), ("has_audio", _BOOL),
    ("video_codec", _STR), ("audio_codec", _STR), ("width", _I32), ("height", _I32), ("short_side", _I32),
    ("declared_duration_s", _F64), ("duration_s", _F64), ("coverage", _F64),
    ("video_frames", _I64), ("keyframes", _I64), ("frames_decoded", _I64), ("fps", _F64), ("declared_fps", _F64),
    ("video_bitrate", _I64), ("bits_per_pixel", _F64), ("sample_rate", _I32), ("channels", _I32),
    ("sampled_frames", _I32), ("black_fraction", _F64), ("uniform_fraction", _F64), ("motion_score", _F64),
    ("crop_top", _I32), ("crop_bottom", _I32), ("crop_left", _I32), ("crop_right", _I32),
    ("border_fraction", _F64),
    ("audio_s", _F64), ("rms_dbfs", _F64), ("peak_dbfs", _F64), ("silent_fraction", _F64),
    ("clipped_fraction", _F64), ("decode_errors", _I64),
    ("frame_hashes", pa.list_(pa.uint64())), ("frame_tiny", pa.binary()), ("audio_fp", pa.list_(pa.uint32())),
])
SIGNATURE_COLUMNS = ("frame_hashes", "frame_tiny", "audio_fp")


class ClipTimeout(Exception):
    """Raised inside a clip's analysis when its time is up."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Stop the block after ``seconds``: yields an Event that is set once time is up.

    A watchdog thread then signals the main thread (SIGALRM) once a second. In Python code
    the signal raises ``ClipTimeout``; inside a read that libav is blocked in, it breaks the
    system call and PyAV's interrupt callback gives up the read (``open_media`` sets a
    read timeout). Only the main thread can take signals; elsewhere only the Event is set.
    """
    expired, stop = threading.Event(), threading.Event()
    main = threading.main_thread()
    signals = threading.current_thread() is main

    def on_alarm(signum, frame):
        raise ClipTimeout(f"no result within {seconds:g} s")

    def watchdog():
        if stop.wait(seconds):
            return
        expired.set()
        while signals and not stop.is_set():
            signal.pthread_kill(main.ident, signal.SIGALRM)
            stop.wait(1.0)

    previous = signal.signal(signal.SIGALRM, on_alarm) if signals else None
    thread = threading.Thread(target=watchdog, name="clip-deadline", daemon=True)
    thread.start()
    try:
        yield expired
    finally:
        stop.set()
        thread.join()
        if signals:
            signal.signal(signal.SIGALRM, lambda signum, frame: None)   # absorb a late signal
            signal.signal(signal.SIGALRM, previous)


def measure_task(task: Task, config: FilterConfig) -> pa.Table:
    """Worker entry point (local pool or Ray): measure every clip of one task."""
    rows = [{"subset": r.get("subset"), **analyze_clip(r["clip_id"], r["path"], r.get("requested_s"), config)}
            for r in task.rows]
    return pa.Table.from_pylist(rows, schema=MEASURE_SCHEMA)


def analyze_clip(clip_id: str, path: str | Path, requested_s: float | None, config: FilterConfig) -> dict:
    """One row of measurements for the clip at ``path`` (status ok | timeout | missing | error)."""
    row = {"clip_id": clip_id, "path": str(path), "requested_s": requested_s, "status": "ok", "error": None}
    started = time.monotonic()
    timed_out = threading.Event()
    try:
        with deadline(config.timeout_s) as timed_out:
            row.update(measure(path, config))
    except ClipTimeout:
        pass
    except FileNotFoundError as exc:
        row.update(status="missing", error=f"media not found: {exc.filename}")
    except Exception as exc:  # noqa: BLE001 - one hostile file must not stop its task: record it
        error = f"{type(exc).__name__}: {exc}"
        log.warning("analysing %s (%s) failed: %s", clip_id, path, error)   # a row, not a traceback
        row.update(status="error", error=error)
    if timed_out.is_set():
        row = {key: row[key] for key in ("clip_id", "path", "requested_s")}
        row.update(status="timeout", error=f"no result within {config.timeout_s:g} s")
    row["analysis_s"] = round(time.monotonic() - started, 4)
    return row


def measure(path: str | Path, config: FilterConfig) -> dict:
    """Metrics and signature of one media file (``probe_error`` set when it cannot be opened)."""
    try:
        info, decoded, problems = _read(path, config, deep=False)
        if decoded.late_stream:         # a stream came after the probe: probe the whole file, read again
            info, decoded, problems = _read(path, config, deep=True)
    except ProbeError as exc:
        return {"probe_error": exc.reason, "detail": exc.detail[:300], "size_bytes": Path(path).stat().st_size}
    if decoded.late_stream:
        problems.add("demux: a stream appeared that even a whole-file probe did not find; read stopped there")
    thumbs = _thin(decoded.thumbs, config.frames)
    stack = np.stack(thumbs) if thumbs else np.zeros((0, THUMB_H, THUMB_W), np.uint8)
    grid = metrics.grids(stack)
    black, flat = metrics.frame_classes(stack, grid)
    mix = metrics.mono(decoded.audio) if decoded.audio is not None and decoded.audio.size else None
    width, height = (info.video.width, info.video.height) if info.video else (0, 0)
    return {
        **stream_metrics(info, decoded),
        **metrics.video_metrics(stack, black, flat, decoded.video_packets, width, height),
        **metrics.audio_metrics(decoded.audio, mix, decoded.sample_rate),
        "decode_errors": problems.count,
        "detail": problems.first[:300] if problems.first else None,
        "frame_hashes": signature.frame_hashes(grid, ~(black | flat)),
        "frame_tiny": signature.frame_tiny(grid),
        "audio_fp": signature.audio_fingerprint(mix, decoded.sample_rate),
    }


def _read(path: str | Path, config: FilterConfig, deep: bool) -> tuple[MediaInfo, Decoded, Problems]:
    """Open (``ProbeError`` when not media), describe and read one file, counting libav's errors."""
    problems = Problems()
    with libav_errors(problems), open_media(path, max(1.0, config.timeout_s / 4), deep=deep) as container:
        info = describe(container, path)
        decoded = read_media(container, sample_slots(info, config), config.max_seconds, problems)
    return info, decoded, problems


def sample_slots(info: MediaInfo, config: FilterConfig) -> list[tuple[float, float]]:
    """Where to sample video: ``frames`` equal slices of its declared duration, one frame each."""
    if info.video is None:
        return []
    start = info.video.start_s if info.video.start_s is not None else info.start_s
    duration = min(info.video.duration_s or info.declared_duration_s or 0.0, config.max_seconds)
    count, step = config.frames, duration / config.frames
    if not duration:       # unknown length: a slice per second, thinned out afterwards
        count, step = int(config.max_seconds / UNKNOWN_DURATION_STEP_S), UNKNOWN_DURATION_STEP_S
    return [(start + i * step, start + (i + 1) * step) for i in range(count)]


def _thin(thumbs: list[np.ndarray], frames: int) -> list[np.ndarray]:
    """At most ``frames`` thumbnails, evenly spread (a dense grid of an unknown-length clip)."""
    if len(thumbs) <= frames:
        return thumbs
    keep = np.linspace(0, len(thumbs) - 1, frames).round().astype(int)
    return [thumbs[i] for i in keep]


def stream_metrics(info: MediaInfo, decoded: Decoded) -> dict:
    """Streams, geometry, rates and measured duration/coverage of one read clip."""
    video, audio = info.video, info.audio
    video_s = (decoded.video_end_s - decoded.video_start_s
               if decoded.video_end_s is not None and decoded.video_start_s is not None else None)
    audio_s = decoded.audio.shape[1] / decoded.sample_rate if decoded.audio is not None and decoded.sample_rate else None
    measured = [d for d in (video_s, audio_s) if d is not None]
    duration = max(measured) if measured else None
    declared = info.declared_duration_s
    pixels = video.width * video.height if video else 0
    return {
        "size_bytes": info.size_bytes,
        "container": info.container,
        "has_video": video is not None,
        "has_audio": audio is not None,
        "video_codec": video.codec if video else None,
        "audio_codec": audio.codec if audio else None,
        "width": video.width if video else None,
        "height": video.height if video else None,
        "short_side": min(video.width, video.height) if video else None,
        "declared_duration_s": round(declared, 3) if declared else None,
        "duration_s": round(duration, 3) if duration is not None else None,
        "coverage": round((duration or 0.0) / declared, 4) if declared else None,   # no data at all: 0
        "video_frames": decoded.video_packets if video else None,
        "keyframes": decoded.video_keyframes if video else None,
        "frames_decoded": decoded.frames_decoded if video else None,
        "fps": round(decoded.video_packets / duration, 3) if video and duration else None,   # frames per clip second
        "declared_fps": round(video.declared_fps, 3) if video and video.declared_fps else None,
        "video_bitrate": round(decoded.video_bytes * 8 / duration) if video and duration else None,
        "bits_per_pixel": (round(decoded.video_bytes * 8 / (decoded.video_packets * pixels), 5)
                           if video and decoded.video_packets and pixels else None),
        "sample_rate": decoded.sample_rate or None if audio else None,
        "channels": audio.channels if audio else None,
    }
