"""Fetch settings: the ``fetch:`` section of a pipeline YAML, flags override single fields.

Three small dataclasses: ``FetchConfig`` (output media, retries, parallelism) holds a
``YouTubeConfig`` (yt-dlp options; never taken from manifest fields) and an
``HttpConfig`` (direct downloads). In YAML the two nest as ``youtube:`` and ``http:``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from valor_data.config import load_section
from valor_data.errors import ConfigError

_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_proxy(proxy: str | None, where: str) -> None:
    """ffmpeg (``-http_proxy``) reads only through an http(s) proxy: refuse SOCKS at load time."""
    if proxy and urlsplit(proxy if "://" in proxy else f"http://{proxy}").scheme.lower() not in ("http", "https"):
        raise ValueError(f"{where}: {proxy!r} is not an http(s) proxy; ffmpeg reads the streams through the same "
                         "proxy as yt-dlp and cannot speak SOCKS: run an HTTP proxy in front of it (e.g. a local "
                         "privoxy or gost forwarding to the SOCKS proxy) and give its http:// URL")


@dataclass(frozen=True)
class IdentityConfig:
    """One YouTube identity: a proxy, a cookies file and a source address, with its own budget."""

    name: str
    proxy: str | None = None               # http(s) proxy for yt-dlp and ffmpeg alike
    cookies_file: str | None = None        # Netscape cookies.txt, copied per process (never written)
    source_address: str | None = None      # local IP to bind (yt-dlp ``source_address``, ffmpeg ``local_addr``)
    videos_per_hour: float | None = None   # None: ``youtube.videos_per_hour``
    min_gap_s: float | None = None         # None: ``youtube.min_gap_s``

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"identity name {self.name!r} must be 1-64 of [A-Za-z0-9_-]")
        check_proxy(self.proxy, f"identity {self.name!r}")
        if (self.videos_per_hour is not None and self.videos_per_hour <= 0) or (self.min_gap_s or 0) < 0:
            raise ValueError(f"identity {self.name!r}: videos_per_hour must be > 0 and min_gap_s >= 0")


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
    # JS runtimes yt-dlp may use to solve YouTube's n/signature challenges, as "name" or "name:path"
    # (yt-dlp ``js_runtimes``; supported: deno, node, quickjs, bun; [] disables all). yt-dlp's default
    # is deno alone: the venv's ``deno`` package provides it, the ``yt-dlp-ejs`` package the solver.
    js_runtimes: list[str] = field(default_factory=lambda: ["deno"])
    # what yt-dlp may download to run the solver (yt-dlp ``remote_components``: "ejs:github",
    # "ejs:npm"); none is needed while ``yt-dlp-ejs`` is installed, and none is allowed by default
    remote_components: list[str] = field(default_factory=list)
    # player clients to try in turn on a 403 or no formats (yt-dlp ``extractor_args.youtube.player_client``,
    # one client per try). Empty: one try with yt-dlp's own choice, which in yt-dlp 2026.10.26 is
    # tv_samsung, visionos, web (no cookies, a JS runtime found), visionos (no runtime: storyboards and
    # degraded formats only), web_embedded, tv_samsung, web (with cookies). web, web_safari, web_embedded,
    # web_music, mweb and the tv clients need a JS runtime; android, android_vr, ios and visionos do
    # not, but ignore cookies; web_creator needs a login.
    player_clients: list[str] = field(default_factory=list)
    max_available_wait_s: float = 30.0     # wait at most this for a format's ``available_at`` (else NotYetAvailable)
    identities: list[IdentityConfig] = field(default_factory=list)   # a pool; empty: one from cookies_file/proxy
    videos_per_hour: float | None = None   # budget per identity (None: 1,500 with cookies, 250 without)
    min_gap_s: float = 1.0                 # at least this long between two resolves of one identity
    block_threshold: int = 5               # blocked failures in a row that quarantine an identity
    quarantine_s: float = 900.0            # the first quarantine; doubles with each one in a row
    max_quarantines: int = 3               # quarantines in a row (no success between) before an identity is out
    blocked_retries: int = 3               # blocked tries of one clip (on other identities) before it is recorded

    def __post_init__(self):
        if self.sleep_s < 0 or self.sleep_requests_s < 0:
            raise ValueError("youtube sleeps must be >= 0")
        check_proxy(self.proxy, "youtube.proxy")
        _check_solver(self)
        self.identities = [_nested(IdentityConfig, i, "fetch.youtube.identities[]") for i in self.identities or []]
        names = [i.name for i in self.identities]
        if len(set(names)) != len(names):
            raise ValueError(f"youtube.identities: names must be unique, got {names}")
        if (self.videos_per_hour is not None and self.videos_per_hour <= 0) or self.min_gap_s < 0:
            raise ValueError("youtube.videos_per_hour must be > 0 and youtube.min_gap_s >= 0")
        if min(self.block_threshold, self.max_quarantines) < 1 or self.quarantine_s <= 0 or self.blocked_retries < 0:
            raise ValueError("youtube.block_threshold and max_quarantines must be >= 1, quarantine_s > 0, "
                             "blocked_retries >= 0")


AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def _check_solver(yt: YouTubeConfig) -> None:
    """js_runtimes, remote_components and player_clients name what the installed yt-dlp knows."""
    from yt_dlp.extractor.youtube._base import INNERTUBE_CLIENTS
    from yt_dlp.globals import supported_js_runtimes, supported_remote_components

    runtimes = [str(r).partition(":")[0].lower() for r in yt.js_runtimes]
    clients = ["default", "all", *(c for c in INNERTUBE_CLIENTS if not c.startswith("_"))]
    for key, names, known in (("js_runtimes", runtimes, list(supported_js_runtimes.value)),
                              ("remote_components", yt.remote_components, list(supported_remote_components.value)),
                              ("player_clients", yt.player_clients, clients)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"youtube.{key}: unknown {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
    if yt.max_available_wait_s < 0:
        raise ValueError("youtube.max_available_wait_s must be >= 0")


@dataclass
class HttpConfig:
    """Direct http(s) media (Youku-mPLUG files, URL lists)."""

    cut_from_url: bool = True              # segments: let ffmpeg seek in the URL instead of downloading
    chunk_bytes: int = 1 << 20
    max_bytes: int = 4 << 30               # refuse bigger files (a failed_permanent row)
    min_rate_bytes_s: int = 16_384         # slower than this over a timeout_s window: a transient TooSlow
    download_timeout_s: float = 3600.0     # one whole-file download attempt at most this long
    user_agent: str = "valor-data/0.1 (+https://github.com/valor-data)"

    def __post_init__(self):
        if self.min_rate_bytes_s < 0 or self.download_timeout_s <= 0:
            raise ValueError("http.min_rate_bytes_s must be >= 0 and http.download_timeout_s > 0")


@dataclass
class FetchConfig:
    """Everything the fetch worker needs; picklable (it travels to pool and Ray workers)."""

    max_short_side: int = 360              # scale down so the short side is at most this (even dims)
    max_fps: float | None = None           # cap the frame rate (None: keep the source's)
    audio_rate: int = 16000                # FLAC sample rate (the audio encoder's)
    audio_channels: int = 1
    mp4_audio_rate: int = 48000            # the MP4's AAC rate (its channels: the source's, at most 2)
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
        if self.mp4_audio_rate not in AAC_RATES:
            raise ValueError(f"mp4_audio_rate must be an AAC rate ({', '.join(map(str, AAC_RATES))})")


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
