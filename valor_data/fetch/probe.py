"""Measure a written output with PyAV (header only: no decoding)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from valor_data.fetch.outcome import permanent


@dataclass
class Probed:
    duration: float
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    audio_duration: float | None = None


def _stream_seconds(stream) -> float:
    if stream.duration is None or stream.time_base is None:
        return 0.0
    return float(stream.duration * stream.time_base)


def probe(path: Path) -> Probed:
    """Duration (container, else longest stream), streams, size and rates of ``path``."""
    import av

    try:
        with av.open(str(path)) as container:
            video = next(iter(container.streams.video), None)
            audio = next(iter(container.streams.audio), None)
            seconds = [_stream_seconds(s) for s in (video, audio) if s is not None]
            duration = container.duration / 1e6 if container.duration else max(seconds, default=0.0)
            return Probed(
                duration=duration, has_video=video is not None, has_audio=audio is not None,
                width=video.codec_context.width if video else None,
                height=video.codec_context.height if video else None,
                fps=float(video.average_rate) if video is not None and video.average_rate else None,
                sample_rate=audio.codec_context.sample_rate if audio else None,
                channels=audio.codec_context.channels if audio else None,
                audio_duration=_stream_seconds(audio) if audio else None)
    except av.error.FFmpegError as exc:
        raise permanent("BadOutput", f"cannot read the written output {path.name}: {exc}") from None
