"""Open a media file in-process with PyAV and describe it (no ffprobe subprocess).

The container is found from the file's bytes, never its extension. A file that cannot
be opened raises ``ProbeError`` whose ``reason`` says why: ``empty_file`` (zero bytes),
``not_media`` (text such as an HTML error page) or ``unreadable`` (no known container,
missing moov, header cut short, ...), with libav's message as detail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from valor_data.errors import ValorError

# a first, cheap open reads only the header (MP4 moov, Matroska tracks: everything is there);
# a container whose streams stay undescribed (MPEG-TS: found by decoding) or that shows no
# video or no audio stream (FLV: a stream is created when its first packet comes) is opened
# again with libav's defaults. Probing costs 5-10 ms per clip otherwise. A stream that shows
# up later still (``decode.Decoded.late_stream``) takes a deep probe: the whole file, up to
# DEEP_PROBE_S of media.
_QUICK_PROBE = {"probesize": "32", "analyzeduration": "0"}
DEEP_PROBE_S = 600.0
_TEXT_START = (b"<", b"{", b"[")


class ProbeError(ValorError):
    """A file that is not readable media; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    declared_fps: float | None     # the container's average (or guessed) rate
    start_s: float | None
    duration_s: float | None       # the stream's declared duration


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class MediaInfo:
    """What the container declares; decoding (``valor_data.media.decode``) measures the rest."""

    size_bytes: int
    container: str
    declared_duration_s: float | None
    start_s: float
    video: VideoInfo | None
    audio: AudioInfo | None


def looks_like_text(head: bytes) -> bool:
    """True for markup or plain text (an HTML error page saved as .mp4, JSON, a CSV)."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(_TEXT_START):
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def open_media(path: str | os.PathLike, timeout_s: float = 30.0, deep: bool = False) -> av.container.InputContainer:
    """Open ``path`` for reading; raise ``ProbeError`` when it is not readable media.

    ``timeout_s`` bounds each read: a read still waiting for data after it is abandoned
    as soon as a signal wakes the blocked system call (see ``curate.analyze.deadline``).
    ``deep`` probes the whole file for streams (up to ``DEEP_PROBE_S`` of media).
    """
    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0     # (a pipe or device has no size to judge)
    if path.is_file() and size == 0:
        raise ProbeError("empty_file", "the file has zero bytes")
    try:
        if deep:
            deep_options = {"probesize": str(max(size, 5_000_000)), "analyzeduration": str(int(DEEP_PROBE_S * 1e6))}
            return av.open(str(path), options=deep_options, timeout=timeout_s)
        container = av.open(str(path), options=_QUICK_PROBE, timeout=timeout_s)
        if _needs_full_probe(container):
            container.close()
            container = av.open(str(path), timeout=timeout_s)
    except av.FFmpegError as exc:
        with open(path, "rb") as fh:
            head = fh.read(512)
        reason = "not_media" if looks_like_text(head) else "unreadable"
        raise ProbeError(reason, _message(exc)) from None
    return container


def _needs_full_probe(container: av.container.InputContainer) -> bool:
    if not container.streams.video or not container.streams.audio:
        return True             # perhaps not seen yet: 32 bytes hold no FLV packet
    for stream in container.streams:
        ctx = stream.codec_context
        if stream.type == "video" and (not ctx or not ctx.width or not ctx.height):
            return True
        if stream.type == "audio" and (not ctx or not ctx.sample_rate):
            return True
    return False


def _message(exc: av.FFmpegError) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _seconds(value, time_base) -> float | None:
    return float(value * time_base) if value is not None and time_base else None


def describe(container: av.container.InputContainer, path: str | os.PathLike) -> MediaInfo:
    """The declared facts of an open container: streams, sizes, rates, duration."""
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    durations = [container.duration / av.time_base] if container.duration else []
    durations += [d for s in (video, audio) if s is not None
                  if (d := _seconds(s.duration, s.time_base)) is not None]
    starts = [t for s in (video, audio) if s is not None
              if (t := _seconds(s.start_time, s.time_base)) is not None]
    return MediaInfo(
        size_bytes=Path(path).stat().st_size,
        container=container.format.name,
        declared_duration_s=max(durations) if durations else None,
        start_s=min(starts) if starts else 0.0,
        video=_video_info(video) if video is not None else None,
        audio=_audio_info(audio) if audio is not None else None,
    )


def _video_info(stream) -> VideoInfo:
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(codec=ctx.name, width=ctx.width or 0, height=ctx.height or 0,
                     declared_fps=float(rate) if rate else None,
                     start_s=_seconds(stream.start_time, stream.time_base),
                     duration_s=_seconds(stream.duration, stream.time_base))


def _audio_info(stream) -> AudioInfo:
    ctx = stream.codec_context
    return AudioInfo(codec=ctx.name, sample_rate=ctx.sample_rate or 0, channels=ctx.channels or 0)
