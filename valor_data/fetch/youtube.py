"""YouTube (and anything else yt-dlp resolves): stream URLs via ``extract_info``, no download.

The clip is then cut by one ffmpeg process that seeks into the chosen video-only and
audio-only streams (``normalize``). Only when ffmpeg cannot read the stream URLs does
yt-dlp download the section itself (``download_ranges``), which is then normalised
locally. yt-dlp options come from ``FetchConfig.youtube``, never from manifest fields.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import uuid
from pathlib import Path

from valor_data.fetch.config import FetchConfig
from valor_data.fetch.formats import Selection, select_formats
from valor_data.fetch.http import diagnose
from valor_data.fetch.normalize import Normalized, Source, normalize
from valor_data.fetch.outcome import (
    RATE_LIMITED,
    UNAVAILABLE,
    FetchFailure,
    disk_full,
    from_http_status,
    parse_retry_after,
    permanent,
    transient,
)

log = logging.getLogger(__name__)

_RATE_LIMITED = re.compile(r"not a bot|rate.?limit|captcha|too many requests|try again later", re.I)
_UNAVAILABLE = re.compile(
    r"video unavailable|private video|video is private|has been removed|been terminated|not available in your "
    r"country|geo.?restrict|from your location|members.only|join this channel|live event will begin|premieres in|"
    r"no longer available|copyright|violat|confirm your age|age.?restricted|inappropriate|video is not available",
    re.I)
_NO_FORMATS = re.compile(r"unsupported url|requested format is not available|no video formats found", re.I)
_local = threading.local()


class _Logger:
    """Route yt-dlp's output to logging (errors are recorded as rows, so they log at debug)."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug

    def warning(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)


def ydl_options(cfg: FetchConfig) -> dict:
    """yt-dlp parameters for resolving (no download) from the config alone."""
    yt = cfg.youtube
    opts = {"quiet": True, "no_warnings": True, "noprogress": True, "noplaylist": True, "logger": _Logger(),
            "socket_timeout": cfg.timeout_s, "extractor_retries": 1, "skip_download": True}
    optional = {"cookiefile": yt.cookies_file, "proxy": yt.proxy, "ratelimit": _bytes_per_s(yt.rate_limit),
                "sleep_interval_requests": yt.sleep_requests_s or None, "format_sort": yt.format_sort or None,
                "extractor_args": yt.extractor_args or None}
    return {**opts, **{k: v for k, v in optional.items() if v is not None}}


def _bytes_per_s(value: str | int | None) -> int | None:
    """``"2M"`` / ``"500K"`` / ``1000000`` -> bytes per second."""
    if value is None or isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)i?B?\s*", str(value), re.I)
    if not match:
        raise permanent("BadConfig", f"youtube.rate_limit {value!r} is not like 500K or 2M")
    return int(float(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " "))


def _ydl(cfg: FetchConfig):
    """One YoutubeDL per thread (it is not thread-safe), rebuilt when the options change."""
    import yt_dlp

    key = repr((cfg.youtube, cfg.timeout_s))
    if getattr(_local, "key", None) != key:
        _local.ydl, _local.key = yt_dlp.YoutubeDL(ydl_options(cfg)), key
    return _local.ydl


def resolve(url: str, cfg: FetchConfig) -> dict:
    """``extract_info(url, download=False)``; yt-dlp errors become classified failures."""
    import yt_dlp

    try:
        return _ydl(cfg).extract_info(url, download=False)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise classify(exc) from None


def classify(exc: BaseException) -> FetchFailure:
    """A yt-dlp error as a clip outcome (HTTP status first, then the extractor's message)."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import GeoRestrictedError

    message = re.sub(r"^ERROR: ", "", str(exc)).strip().splitlines()[0][:300] if str(exc) else type(exc).__name__
    if "No space left on device" in message:
        raise disk_full("the work dir (yt-dlp)")
    chain = _chain(exc)
    http_error = next((e for e in chain if isinstance(e, HTTPError)), None)
    if http_error is not None and http_error.status == 403:   # stream URLs: signature or session trouble
        return transient("HTTP403", message)
    if http_error is not None:
        headers = getattr(http_error.response, "headers", {}) or {}
        return from_http_status(http_error.status, message, parse_retry_after(headers.get("Retry-After")))
    if _RATE_LIMITED.search(message):
        return FetchFailure(RATE_LIMITED, "RateLimited", message)
    if any(isinstance(e, GeoRestrictedError) for e in chain) or _UNAVAILABLE.search(message):
        return FetchFailure(UNAVAILABLE, "Unavailable", message)
    if any(isinstance(e, (TransportError, TimeoutError, ConnectionError)) for e in chain):
        return transient("Network", message)
    if _NO_FORMATS.search(message):
        return permanent("NoFormats", message)
    expected = any(getattr(e, "expected", False) for e in chain)
    return permanent("Extractor", message) if expected else transient("Extractor", message)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what yt-dlp wrapped in it (exc_info, cause) and Python's causes."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 10:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        exc_info = getattr(e, "exc_info", None)
        todo += [exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None,
                 getattr(e, "cause", None) if isinstance(getattr(e, "cause", None), BaseException) else None,
                 e.__cause__, e.__context__]
    return seen


def sources(selection: Selection, cfg: FetchConfig) -> list[Source]:
    """ffmpeg inputs for a selection: one for a muxed format, else video then audio."""
    formats = [selection.video] if selection.muxed else [f for f in (selection.video, selection.audio) if f]
    out = []
    for fmt in formats:
        headers = {k: v for k, v in (fmt.get("http_headers") or {}).items() if "\r" not in v and "\n" not in v}
        cookies = _cookie_header(fmt["url"], cfg)
        if cookies:
            headers["Cookie"] = cookies
        out.append(Source(fmt["url"], video=fmt is selection.video, audio=fmt is selection.audio,
                          headers=tuple(headers.items()), proxy=cfg.youtube.proxy))
    return out


def _cookie_header(url: str, cfg: FetchConfig) -> str | None:
    if not cfg.youtube.cookies_file:
        return None
    header = _ydl(cfg).cookiejar.get_cookie_header(url)
    return header if header and "\r" not in header and "\n" not in header else None


def fetch_youtube(url: str, start: float | None, end: float | None, mp4: Path, flac: Path, cfg: FetchConfig,
                  staging: Path, trace: dict) -> Normalized:
    """Resolve, select, cut in one ffmpeg pass; fall back to a yt-dlp section download."""
    info = resolve(url, cfg)
    selection = select_formats(info, cfg.youtube, cfg.max_short_side, cfg.max_fps)
    if selection is None:
        raise permanent("NoFormats", "yt-dlp found no format ffmpeg can read")
    trace.update(method="cut", formats=selection.ids)
    inputs = sources(selection, cfg)
    try:
        return normalize(inputs, start, end, mp4, flac, cfg)
    except FetchFailure as failure:
        if failure.status == RATE_LIMITED or failure.error_class in ("ShortOutput", "Timeout", "Network"):
            raise
        diagnosis = diagnose(inputs[0].location, cfg, dict(inputs[0].headers)) if inputs[0].remote else None
        if diagnosis is not None and diagnosis.error_class in ("HtmlPage", "EmptyFile", "HTTP429"):
            raise diagnosis from None
        if not cfg.youtube.section_fallback:
            raise (diagnosis or failure) from None
        log.info("one-pass cut of %s failed (%s); trying yt-dlp's section download", url, failure)
    trace.update(method="section")
    return _via_section(url, selection, start, end, mp4, flac, cfg, staging, info.get("duration"))


def _via_section(url: str, selection: Selection, start: float | None, end: float | None, mp4: Path, flac: Path,
                 cfg: FetchConfig, staging: Path, duration: float | None) -> Normalized:
    folder = staging / f"section-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = section_download(url, selection, start, end, cfg, folder)
        length = None if end is None else (min(end, duration) if duration else end) - (start or 0.0)
        # a section file is only as long as the section: trust its length only when yt-dlp knew the video's
        return normalize([Source(str(path))], None, length, mp4, flac, cfg,
                         known_duration=length if duration else None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def section_download(url: str, selection: Selection, start: float | None, end: float | None, cfg: FetchConfig,
                     folder: Path) -> Path:
    """yt-dlp downloads only ``[start, end]`` of the selected formats into ``folder``."""
    import yt_dlp
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
    from yt_dlp.utils import download_range_func

    from valor_data.media.ffmpeg import ffmpeg_exe

    FFmpegPostProcessor._ffmpeg_location.set(ffmpeg_exe())   # what yt-dlp's --ffmpeg-location does
    opts = {**ydl_options(cfg), "skip_download": False, "format": selection.ids, "ffmpeg_location": ffmpeg_exe(),
            "outtmpl": {"default": str(folder / "section.%(ext)s")}, "overwrites": True, "retries": 2,
            "merge_output_format": "mkv", "cachedir": False}
    if end is not None:
        opts["download_ranges"] = download_range_func(None, [(start or 0.0, end)])
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            ydl.extract_info(url, download=True)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise classify(exc) from None
    files = [p for p in folder.iterdir() if p.is_file() and p.stat().st_size and not p.name.endswith(".part")]
    if not files:
        raise transient("SectionDownload", "yt-dlp's section download wrote no file")
    return max(files, key=lambda p: p.stat().st_size)
