"""YouTube (and anything else yt-dlp resolves): stream URLs via ``extract_info``, no download.

The clip is then cut by one ffmpeg process that seeks into the chosen video-only and
audio-only streams (``normalize``). Only when ffmpeg cannot read the stream URLs does
yt-dlp download the section itself (``download_ranges``), which is then normalised
locally. yt-dlp options come from ``FetchConfig.youtube``, never from manifest fields.
On a 403 or no formats the next of ``youtube.player_clients`` resolves again; a format's
``available_at`` is waited for before ffmpeg reads it. ``classify`` tells a refused session
(``blocked``) from what the video says of itself (``unavailable``); yt-dlp's warnings are
logged at WARNING once per process and counted (``warning_counts``).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from valor_data.fetch.config import FetchConfig
from valor_data.fetch.formats import Selection, available_at, select_formats
from valor_data.fetch.http import diagnose
from valor_data.fetch.identity import Identity, standalone
from valor_data.fetch.normalize import Normalized, Source, normalize
from valor_data.fetch.outcome import (
    BLOCKED,
    RATE_LIMITED,
    UNAVAILABLE,
    FetchFailure,
    blocked,
    disk_full,
    from_http_status,
    parse_retry_after,
    permanent,
    transient,
)

log = logging.getLogger(__name__)

# yt-dlp's messages (YouTube's reasons, as yt-dlp 2026.10.26 formats them) -> outcomes; first match wins
_SESSION = ((re.compile(r"confirm you.re not a bot|captcha", re.I), "BotCheck"),
            (re.compile(r"player responses are invalid|IP is likely being blocked", re.I), "IpBlocked"))
_RATE_LIMITED = re.compile(r"rate.?limit|too many requests|try again later", re.I)
_UNAVAILABLE = re.compile(   # what the video itself says
    r"private video|video is private|has been removed|been terminated|account associated with this video|"
    r"available in your country|geo.?restrict|from your location|members.only|join this channel|"
    r"live event will begin|premieres in|no longer available|copyright|violat|confirm your age|age.?restricted|"
    r"inappropriate|does not exist|DRM protected", re.I)
_REFUSED = ((re.compile(r"this content isn.t available", re.I), "ContentRefused"),   # no clip-level reason
            (re.compile(r"this video is not available(?!\s+(?:in|from|on)\b)|not available on this app|"
                        r"playback on other websites has been disabled", re.I), "ClientRefused"))
_VIDEO_UNAVAILABLE = re.compile(r"video unavailable|video is unavailable", re.I)
_NO_FORMATS = re.compile(r"requested format is not available|no video formats found", re.I)
# warnings after which YouTube's formats may be missing (challenge solving, JS runtime, SABR, PO token)
_FORMATS_MISSING = re.compile(r"challenge solving failed|JavaScript runtime|formats have been skipped|"
                              r"formats may be missing|PO Token", re.I)
_local = threading.local()
_warnings: Counter = Counter()      # this process's yt-dlp warnings by short form
_warnings_lock = threading.Lock()


def warning_key(msg: str) -> str:
    """A yt-dlp warning's short form: no ``[extractor] id:`` prefix, first clause, ids and numbers out."""
    text = re.sub(r"^(?:WARNING:\s*)?(?:\[[\w:-]+\]\s*)?(?:[\w-]{11}:\s+)?", "", str(msg).strip())
    text = re.split(r"(?<=[^.])\.\s|:\s", text, maxsplit=1)[0]
    text = re.sub(r"https?://\S+", "URL", re.sub(r'"[^"]*"', '"…"', text))
    return re.sub(r"\d+", "N", text).strip(" .")[:80] or "warning"


def warning_counts() -> dict[str, int]:
    """This process's yt-dlp warnings so far, by short form (``warning_key``)."""
    with _warnings_lock:
        return dict(_warnings)


def warnings_since(before: dict[str, int]) -> dict[str, int]:
    """The warnings counted since ``before`` (an earlier ``warning_counts()``)."""
    return {k: n - before.get(k, 0) for k, n in sorted(warning_counts().items()) if n > before.get(k, 0)}


class _Logger:
    """Route yt-dlp's output to logging: warnings at WARNING (each short form once per process, then
    at DEBUG) and counted; errors are recorded as rows, so they log at DEBUG."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug

    def warning(self, msg: str) -> None:
        key = warning_key(msg)
        with _warnings_lock:
            _warnings[key] += 1
            first = _warnings[key] == 1
        if _FORMATS_MISSING.search(msg):
            _local.formats_missing = key
        log.log(logging.WARNING if first else logging.DEBUG, "yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)


def ydl_options(cfg: FetchConfig, identity: Identity | None = None, client: str | None = None) -> dict:
    """yt-dlp parameters for resolving (no download) from the config and the identity (its proxy,
    source address and cookies file; None: ``youtube.proxy`` and ``youtube.cookies_file``);
    ``client``: the one player client to ask for (None: yt-dlp's own choice)."""
    yt = cfg.youtube
    who = identity or standalone(yt)
    opts = {"quiet": True, "no_warnings": True, "noprogress": True, "noplaylist": True, "logger": _Logger(),
            "socket_timeout": cfg.timeout_s, "extractor_retries": 1, "skip_download": True,
            "js_runtimes": js_runtimes(yt.js_runtimes), "remote_components": list(yt.remote_components)}
    extractor_args = dict(yt.extractor_args)
    if client:
        extractor_args["youtube"] = {**extractor_args.get("youtube", {}), "player_client": [client]}
    optional = {"cookiefile": who.cookiefile, "proxy": who.proxy, "source_address": who.source_address,
                "ratelimit": _bytes_per_s(yt.rate_limit),
                "sleep_interval_requests": yt.sleep_requests_s or None, "format_sort": yt.format_sort or None,
                "extractor_args": extractor_args or None}
    return {**opts, **{k: v for k, v in optional.items() if v is not None}}


def js_runtimes(names: list[str]) -> dict[str, dict]:
    """``["deno", "node:/opt/node"]`` -> yt-dlp's ``{"deno": {"path": None}, "node": {"path": "/opt/node"}}``."""
    pairs = (str(name).partition(":")[::2] for name in names)
    return {runtime.lower(): {"path": path or None} for runtime, path in pairs}


def _bytes_per_s(value: str | int | None) -> int | None:
    """``"2M"`` / ``"500K"`` / ``1000000`` -> bytes per second."""
    if value is None or isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)i?B?\s*", str(value), re.I)
    if not match:
        raise permanent("BadConfig", f"youtube.rate_limit {value!r} is not like 500K or 2M")
    return int(float(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " "))


def _ydl(cfg: FetchConfig, identity: Identity | None = None, client: str | None = None):
    """One YoutubeDL per thread, identity and player client (it is not thread-safe), rebuilt when the
    options change; all of an identity's share its one cookie jar."""
    who = identity or standalone(cfg.youtube)
    key = repr((cfg.youtube, cfg.timeout_s, who.spec, who.cookiefile, client))
    cache = _local.__dict__.setdefault("ydls", {})
    if key not in cache:
        if len(cache) >= 8:   # configs of earlier runs in this process
            cache.clear()
        cache[key] = _with_jar(ydl_options(cfg, who, client), who)
    return cache[key]


def _with_jar(opts: dict, identity: Identity):
    """A YoutubeDL that uses the identity's jar (never saved) instead of loading the cookies file."""
    import yt_dlp

    ydl = yt_dlp.YoutubeDL(opts)
    if identity.jar is not None:
        ydl.cookiejar = identity.jar   # a cached_property: set before the first request reads it
    return ydl


def resolve(url: str, cfg: FetchConfig, identity: Identity | None = None, client: str | None = None) -> dict:
    """``extract_info(url, download=False)`` once the identity's budget allows (its slot is taken
    right before yt-dlp's first request); yt-dlp errors become classified failures."""
    import yt_dlp

    _local.formats_missing = None
    ydl = _ydl(cfg, identity, client)
    if identity is not None:
        identity.pace()
    try:
        return ydl.extract_info(url, download=False)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise classify(exc, _local.formats_missing) from None


def classify(exc: BaseException, formats_missing: str | None = None) -> FetchFailure:
    """A yt-dlp error as a clip outcome: HTTP status first, then what the message says of the
    session (blocked), of the rate (rate limited), of the video (unavailable). ``formats_missing``:
    a warning seen while resolving after which formats may be missing (a failed JS challenge)."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import GeoRestrictedError

    message = re.sub(r"^ERROR: ", "", str(exc)).strip().splitlines()[0][:300] if str(exc) else type(exc).__name__
    if "No space left on device" in message:
        raise disk_full("the work dir (yt-dlp)")
    chain = _chain(exc)
    http_error = next((e for e in chain if isinstance(e, HTTPError)), None)
    if http_error is not None:
        return _from_http_error(http_error, message)
    session = next((name for pattern, name in _SESSION if pattern.search(message)), None)
    if session:
        return blocked(session, message)
    if _RATE_LIMITED.search(message):
        return FetchFailure(RATE_LIMITED, "RateLimited", message)
    if any(isinstance(e, GeoRestrictedError) for e in chain) or _UNAVAILABLE.search(message):
        return FetchFailure(UNAVAILABLE, "Unavailable", message)
    refused = next((name for pattern, name in _REFUSED if pattern.search(message)), None)
    if refused:
        return blocked(refused, message)
    if _VIDEO_UNAVAILABLE.search(message):
        return FetchFailure(UNAVAILABLE, "Unavailable", message)
    if any(isinstance(e, (TransportError, TimeoutError, ConnectionError)) for e in chain):
        return transient("Network", message)
    if _NO_FORMATS.search(message):
        return _no_formats(chain, message, formats_missing)
    if re.search(r"unsupported url", message, re.I):
        return permanent("NoFormats", message)
    expected = any(getattr(e, "expected", False) for e in chain)
    return permanent("Extractor", message) if expected else transient("Extractor", message)


def _from_http_error(error, message: str) -> FetchFailure:
    """A 403 from a googlevideo.com stream refuses the session; other 403s (signatures) are transient."""
    if error.status == 403:
        host = urlsplit(str(getattr(error.response, "url", "") or "")).hostname or ""
        return blocked("HTTP403", message) if host.endswith("googlevideo.com") else transient("HTTP403", message)
    headers = getattr(error.response, "headers", {}) or {}
    return from_http_status(error.status, message, parse_retry_after(headers.get("Retry-After")))


def _no_formats(chain: list[BaseException], message: str, formats_missing: str | None) -> FetchFailure:
    """No readable format: from YouTube (storyboards only: challenges unsolved, SABR, PO token) the
    session is at fault; from another site the page has no media."""
    if formats_missing:
        return blocked("NoFormats", f"{message} (after yt-dlp warned: {formats_missing})"[:300])
    youtube = any(getattr(e, "ie", None) == "youtube" for e in chain) or message.startswith("[youtube]")
    return blocked("NoFormats", message) if youtube else permanent("NoFormats", message)


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


def sources(selection: Selection, cfg: FetchConfig, identity: Identity | None = None) -> list[Source]:
    """ffmpeg inputs for a selection (one for a muxed format, else video then audio), read through
    the identity's proxy and source address with its cookies."""
    who = identity or standalone(cfg.youtube)
    formats = [selection.video] if selection.muxed else [f for f in (selection.video, selection.audio) if f]
    out = []
    for fmt in formats:
        headers = {k: v for k, v in (fmt.get("http_headers") or {}).items() if "\r" not in v and "\n" not in v}
        cookies = _cookie_header(fmt["url"], who)
        if cookies:
            headers["Cookie"] = cookies
        out.append(Source(fmt["url"], video=fmt is selection.video, audio=fmt is selection.audio,
                          headers=tuple(headers.items()), proxy=who.proxy, local_addr=who.source_address))
    return out


def _cookie_header(url: str, identity: Identity) -> str | None:
    if identity.jar is None:
        return None
    header = identity.jar.get_cookie_header(url)
    return header if header and "\r" not in header and "\n" not in header else None


def fetch_youtube(url: str, start: float | None, end: float | None, mp4: Path, flac: Path, cfg: FetchConfig,
                  staging: Path, trace: dict, identity: Identity | None = None) -> Normalized:
    """Resolve, select, cut in one ffmpeg pass. On a 403 or no formats, the next of
    ``youtube.player_clients`` resolves again before anything is recorded; the last one (or
    yt-dlp's own choice) falls back to a yt-dlp section download."""
    *others, final = cfg.youtube.player_clients or [None]
    for client in others:
        try:
            return _fetch_as(client, url, start, end, mp4, flac, cfg, staging, trace, identity, fallback=False)
        except FetchFailure as failure:
            if failure.error_class not in _NEXT_CLIENT:
                raise
            log.info("%s: player client %s failed (%s); trying the next one", url, client, failure)
    return _fetch_as(final, url, start, end, mp4, flac, cfg, staging, trace, identity,
                     fallback=cfg.youtube.section_fallback)


_NEXT_CLIENT = ("HTTP403", "NoFormats", "ClientRefused")   # what another player client may not meet


def _fetch_as(client: str | None, url: str, start: float | None, end: float | None, mp4: Path, flac: Path,
              cfg: FetchConfig, staging: Path, trace: dict, identity: Identity | None, fallback: bool) -> Normalized:
    """One player client's try: resolve, select, wait for ``available_at``, cut (then maybe a section)."""
    info = resolve(url, cfg, identity, client)
    selection = select_formats(info, cfg.youtube, cfg.max_short_side, cfg.max_fps)
    if selection is None:   # YouTube with nothing readable (storyboards, SABR only) refuses the session
        refused = blocked if info.get("extractor") == "youtube" else permanent
        raise refused("NoFormats", "yt-dlp found no format ffmpeg can read")
    trace.update(method="cut", formats=selection.ids, client=client)
    wait_available(selection, cfg)
    inputs = sources(selection, cfg, identity)
    try:
        return normalize(inputs, start, end, mp4, flac, cfg)
    except FetchFailure as failure:
        if failure.status in (RATE_LIMITED, BLOCKED) or failure.error_class in ("ShortOutput", "Timeout", "Network"):
            raise
        diagnosis = diagnose(inputs[0].location, cfg, dict(inputs[0].headers), inputs[0].proxy,
                             inputs[0].local_addr) if inputs[0].remote else None
        if diagnosis is not None and diagnosis.error_class in ("HtmlPage", "EmptyFile", "HTTP429"):
            raise diagnosis from None
        if not fallback:
            raise (diagnosis or failure) from None
        log.info("one-pass cut of %s failed (%s); trying yt-dlp's section download", url, failure)
    trace.update(method="section")
    return _via_section(url, selection, start, end, mp4, flac, cfg, staging, info.get("duration"), identity, client)


def wait_available(selection: Selection, cfg: FetchConfig, sleep=time.sleep) -> float:
    """Sleep until the selected formats' ``available_at`` (YouTube's pre-roll: reading sooner gets a
    403), at most ``youtube.max_available_wait_s`` (beyond: a transient NotYetAvailable); return the wait."""
    when = available_at(selection)
    wait = when - time.time() if when is not None else 0.0
    if wait > cfg.youtube.max_available_wait_s:
        raise transient("NotYetAvailable", f"formats {selection.ids} are available only in {wait:.0f} s "
                                           f"(youtube.max_available_wait_s: {cfg.youtube.max_available_wait_s:g})")
    if wait > 0:
        log.debug("waiting %.1f s for formats %s (available_at)", wait, selection.ids)
        sleep(wait)
    return max(wait, 0.0)


def _via_section(url: str, selection: Selection, start: float | None, end: float | None, mp4: Path, flac: Path,
                 cfg: FetchConfig, staging: Path, duration: float | None, identity: Identity | None = None,
                 client: str | None = None) -> Normalized:
    folder = staging / f"section-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = section_download(url, selection, start, end, cfg, folder, identity, client)
        length = None if end is None else (min(end, duration) if duration else end) - (start or 0.0)
        # a section file is only as long as the section: trust its length only when yt-dlp knew the video's
        return normalize([Source(str(path))], None, length, mp4, flac, cfg,
                         known_duration=length if duration else None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def section_download(url: str, selection: Selection, start: float | None, end: float | None, cfg: FetchConfig,
                     folder: Path, identity: Identity | None = None, client: str | None = None) -> Path:
    """yt-dlp downloads only ``[start, end]`` of the selected formats into ``folder``, as the identity
    (yt-dlp hands its proxy to ffmpeg; the jar it closes with never saves)."""
    import yt_dlp
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
    from yt_dlp.utils import download_range_func

    from valor_data.media.ffmpeg import ffmpeg_exe

    FFmpegPostProcessor._ffmpeg_location.set(ffmpeg_exe())   # what yt-dlp's --ffmpeg-location does
    who = identity or standalone(cfg.youtube)
    opts = {**ydl_options(cfg, who, client), "skip_download": False, "format": selection.ids, "ffmpeg_location": ffmpeg_exe(),
            "outtmpl": {"default": str(folder / "section.%(ext)s")}, "overwrites": True, "retries": 2,
            "merge_output_format": "mkv", "cachedir": False}
    if end is not None:
        opts["download_ranges"] = download_range_func(None, [(start or 0.0, end)])
    if who.source_address:   # yt-dlp's ffmpeg downloader: bind each input like the one-pass cut does
        opts["external_downloader_args"] = {"ffmpeg_i": ["-local_addr", who.source_address]}
    try:
        with _with_jar(opts, who) as ydl:
            who.pace()   # yt-dlp resolves the video again: within the identity's budget
            ydl.extract_info(url, download=True)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise classify(exc) from None
    files = [p for p in folder.iterdir() if p.is_file() and p.stat().st_size and not p.name.endswith(".part")]
    if not files:
        raise transient("SectionDownload", "yt-dlp's section download wrote no file")
    return max(files, key=lambda p: p.stat().st_size)
