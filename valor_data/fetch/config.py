"""Fetch settings: the ``fetch:`` section of a pipeline YAML, flags override single fields.

Three small dataclasses: ``FetchConfig`` (output media, retries, parallelism) holds a
``YouTubeConfig`` (yt-dlp options; never taken from manifest fields) and an
``HttpConfig`` (direct downloads). In YAML the two nest as ``youtube:`` and ``http:``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from valor_data.config import load_section
from valor_data.errors import ConfigError


@dataclass
class YouTubeConfig:
    """How AudioSet clips are resolved with yt-dlp (``extract_info``, no download)."""

    cookies_file: str | None = None        # Netscape cookies.txt (yt-dlp ``cookiefile``)
    proxy: str | None = None               # used by yt-dlp and by ffmpeg's http reads
    rate_limit: str | int | None = None     # bytes/s for section downloads, e.g. "2M" (yt-dlp ``ratelimit``)
    sleep_s: float = 0.0                   # pause before each clip a thread resolves (politeness)
    sleep_requests_s: float = 0.0          # yt-dlp ``sleep_interval_requests``
    video_codecs: list[str] = field(default_factory=lambda: ["avc1", "vp9", "av01"])   # preference order
    audio_codecs: list[str] = field(default_factory=lambda: ["mp4a", "opus"])
    audio_kbps: float = 96.0               # pick the audio format nearest at or above this bitrate
    prefer_progressive: bool = False       # take one muxed format over a video-only + audio-only pair
    format_sort: list[str] = field(default_factory=list)   # yt-dlp ``format_sort`` (section fallback)
    extractor_args: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    section_fallback: bool = True          # use yt-dlp's section download when the one-pass cut fails

    def __post_init__(self):
        if self.sleep_s < 0 or self.sleep_requests_s < 0:
            raise ValueError("youtube sleeps must be >= 0")


@dataclass
class HttpConfig:
    """Direct http(s) media (Youku-mPLUG files, URL lists)."""

    cut_from_url: bool = True              # segments: let ffmpeg seek in the URL instead of downloading
    chunk_bytes: int = 1 << 20
    max_bytes: int = 4 << 30               # refuse bigger files (a failed_permanent row)
    user_agent: str = "valor-data/0.1 (+https://github.com/valor-data)"


@dataclass
class FetchConfig:
    """Everything the fetch worker needs; picklable (it travels to pool and Ray workers)."""

    max_short_side: int = 360              # scale down so the short side is at most this (even dims)
    max_fps: float | None = None           # cap the frame rate (None: keep the source's)
    audio_rate: int = 16000                # FLAC sample rate (the audio encoder's)
    audio_channels: int = 1
    crf: int = 23
    preset: str = "veryfast"
    keyframe_interval_s: float | None = 1.0   # a keyframe every second (None: the encoder's default)
    aac_kbps: int = 128
    ffmpeg_threads: int = 1                # threads per ffmpeg (parallelism comes from processes)
    task_size: int = 32                    # clips per task (one result table each)
    workers: int = 0                       # worker processes (0: one per CPU)
    threads: int = 3                       # clips in flight per worker (network waits overlap ffmpeg)
    timeout_s: float = 30.0                # network read timeout (yt-dlp, http, ffmpeg rw_timeout)
    clip_timeout_s: float = 300.0          # one ffmpeg process at most this long (then a transient Timeout)
    retries: int = 4                       # transient failures retried this many times per clip and run
    backoff_s: float = 2.0                 # first retry delay; doubles, full jitter
    backoff_max_s: float = 120.0
    rate_limit_retries: int = 6            # rate-limited attempts per clip before recording rate_limited
    rate_limit_wait_s: float = 60.0        # global pause after a 429 without Retry-After; doubles
    rate_limit_max_s: float = 3600.0
    allow_file_urls: bool = False          # accept file:// URLs (local corpora)
    media_url: str | None = None           # fsspec URL for media (None: WORKDIR/media)
    youtube: YouTubeConfig = field(default_factory=YouTubeConfig)
    http: HttpConfig = field(default_factory=HttpConfig)

    def __post_init__(self):
        self.youtube = _nested(YouTubeConfig, self.youtube, "fetch.youtube")
        self.http = _nested(HttpConfig, self.http, "fetch.http")
        if self.max_short_side < 16 or self.max_short_side % 2:
            raise ValueError("max_short_side must be an even number >= 16")
        if self.max_fps is not None and self.max_fps <= 0:
            raise ValueError("max_fps must be > 0")
        if self.keyframe_interval_s is not None and self.keyframe_interval_s <= 0:
            raise ValueError("keyframe_interval_s must be > 0 (or null for the encoder's default)")
        if self.task_size < 1 or self.threads < 1 or self.workers < 0 or self.retries < 0:
            raise ValueError("task_size and threads must be >= 1; workers and retries >= 0")
        if self.timeout_s <= 0 or self.clip_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")


def _nested(cls: type, value: Any, section: str):
    """A nested section given as a mapping (from YAML) becomes its dataclass."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{section} must be a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in {section}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**value)


def load_fetch_config(pipeline: Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
                      youtube: Mapping[str, Any] | None = None) -> FetchConfig:
    """``FetchConfig`` from ``pipeline['fetch']``; non-None ``overrides``/``youtube`` flags win."""
    config = load_section(FetchConfig, pipeline, "fetch", overrides)
    changes = {k: v for k, v in (youtube or {}).items() if v is not None}
    if changes:
        try:
            config.youtube = dataclasses.replace(config.youtube, **changes)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad 'fetch.youtube' settings: {exc}") from None
    return config
