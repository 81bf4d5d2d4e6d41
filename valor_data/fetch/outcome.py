"""What happened to a clip: statuses, the failure type, and how errors are classified.

Statuses (the ``status`` column of ``fetch.parquet``):

- ``ok``: both files written and checked.
- ``unavailable``: what the video itself says: private, removed, terminated account, copyright,
  region-blocked, age- or member-gated: permanent, never retried.
- ``rate_limited``: HTTP 429 or "This content isn't available, try again later" (yt-dlp calls it a
  rate limit of up to an hour): every worker backs off; rerun with --retry-failed.
- ``blocked``: the session (IP, cookies, player client, JS challenge solver) is refused, not the clip:
  "Sign in to confirm you're not a bot" and captchas (``BotCheck``: YouTube asks this of the session,
  whatever the video, so it is a block, not a rate limit), "All player responses are invalid. Your IP
  is likely being blocked" (``IpBlocked``), "Video unavailable. This content isn't available." with
  no clip-level reason (``ContentRefused``), a bare "This video is not available" from a fallback
  client (``ClientRefused``: made-for-kids videos), "Requested format is not available" from YouTube,
  i.e. storyboards only after failed n/sig challenge solving (``NoFormats``), and a 403 from a
  googlevideo.com stream (``HTTP403``). Retryable: rerun with --retry-failed once the session works.
- ``failed_transient``: timeouts, resets, 5xx: retried with backoff up to a budget, then recorded.
- ``failed_permanent``: 404, an HTML page or an empty file instead of media, undecodable media.

A full disk is not a clip outcome: ``DiskFullError`` stops the whole run.
"""

from __future__ import annotations

import errno
import random
import re

import pyarrow as pa

from valor_data.errors import ValorError

OK = "ok"
UNAVAILABLE = "unavailable"
RATE_LIMITED = "rate_limited"
BLOCKED = "blocked"
TRANSIENT = "failed_transient"
PERMANENT = "failed_permanent"
STATUSES = (OK, UNAVAILABLE, RATE_LIMITED, BLOCKED, TRANSIENT, PERMANENT)
RETRYABLE = (TRANSIENT, RATE_LIMITED, BLOCKED)        # what a bare --retry-failed runs again
# the error classes fetch records (besides any HTTP<code>); --retry-failed accepts these by name
ERROR_CLASSES = (
    "BadChecksum", "BadClipId", "BadConfig", "BadMedia", "BadOutput", "BadRange", "BadUrl", "BotCheck",
    "ChecksumMismatch", "ClientRefused", "ContentRefused", "EmptyFile", "Extractor", "FFmpeg", "FileNotFound",
    "FileUrlRefused", "HtmlPage", "HTTP5xx", "IpBlocked", "Network", "NoFormats", "NoStreams", "NotYetAvailable",
    "RateLimited", "SectionDownload", "SegmentAfterEnd", "ShortOutput", "Timeout", "TooLarge", "TooSlow", "Truncated",
    "Unavailable",
)

WARNINGS_KEY = b"valor.ytdlp_warnings"   # a task table's metadata: {short form: count} yt-dlp warned of
FETCH_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error_class", pa.string()),      # e.g. HTTP404, Timeout, HtmlPage, BadMedia, Unavailable
    pa.field("error", pa.string()),            # one human-readable line
    pa.field("attempts", pa.int32()),
    pa.field("bytes", pa.int64()),             # bytes of media written (mp4 + flac)
    pa.field("seconds", pa.float64()),         # wall time spent on the clip, all attempts
    pa.field("method", pa.string()),           # cut | section | download | file
    pa.field("formats", pa.string()),          # chosen formats, e.g. "134+140" or "mp4"
    pa.field("client", pa.string()),           # the yt-dlp player client that gave them (null: yt-dlp's default)
    pa.field("duration_s", pa.float64()),      # measured duration of the output
    pa.field("source_duration_s", pa.float64()),
    pa.field("has_video", pa.bool_()),
    pa.field("has_audio", pa.bool_()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("source_bits_per_pixel", pa.float64()),   # the source video's bitrate / (width x height x fps)
    pa.field("source_decode_errors", pa.int32()),      # decoder errors while reading the segment
])


class DiskFullError(ValorError):
    """The device holding the work dir (or media) is full: the run stops, no clip is marked failed."""


class FetchFailure(Exception):
    """A clip could not be fetched; ``status`` says whether and how it may be retried."""

    def __init__(self, status: str, error_class: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.error_class = error_class
        self.retry_after = retry_after


def transient(error_class: str, message: str) -> FetchFailure:
    return FetchFailure(TRANSIENT, error_class, message)


def permanent(error_class: str, message: str) -> FetchFailure:
    return FetchFailure(PERMANENT, error_class, message)


def blocked(error_class: str, message: str) -> FetchFailure:
    return FetchFailure(BLOCKED, error_class, message)


def is_error_class(name: str) -> bool:
    """True for a class fetch records: one of ``ERROR_CLASSES`` or ``HTTP<3 digits>``."""
    return name in ERROR_CLASSES or re.fullmatch(r"HTTP\d{3}", name) is not None


def from_http_status(code: int, message: str, retry_after: float | None = None) -> FetchFailure:
    """An HTTP error status as a clip outcome."""
    if code == 429:
        return FetchFailure(RATE_LIMITED, "HTTP429", message, retry_after)
    if code in (401, 403, 410, 451):
        return FetchFailure(UNAVAILABLE, f"HTTP{code}", message)
    if code == 408 or code >= 500:
        return FetchFailure(TRANSIENT, f"HTTP{code}", message, retry_after)
    return FetchFailure(PERMANENT, f"HTTP{code}", message)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import datetime as dt
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(where: str) -> DiskFullError:
    return DiskFullError(f"no space left on the device holding {where}: free some space and rerun "
                         "the same command (finished clips are kept; none was marked failed)")


# ffmpeg stderr -> outcome; the first matching rule wins
_FFMPEG_RULES = [
    (re.compile(r"Server returned 429|HTTP error 429"), RATE_LIMITED, "HTTP429"),
    (re.compile(r"HTTP error (\d{3})"), "http", ""),
    (re.compile(r"Server returned 5XX|Server returned 50\d"), TRANSIENT, "HTTP5xx"),
    (re.compile(r"Server returned 404"), PERMANENT, "HTTP404"),
    (re.compile(r"Server returned 403"), UNAVAILABLE, "HTTP403"),
    (re.compile(r"timed out|Connection reset by peer|Connection refused|Error reading HTTP response|"
                r"Stream ends prematurely|Network is unreachable|Temporary failure in name resolution",
                re.I), TRANSIENT, "Network"),
    (re.compile(r"partial file"), PERMANENT, "Truncated"),
    (re.compile(r"Invalid data found|moov atom not found|could not find codec parameters|"
                r"does not contain any stream|Decoding error|Error opening input.*End of file", re.I),
     PERMANENT, "BadMedia"),
]
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded")
_HTTP_403 = re.compile(r"Server returned 403|HTTP error 403")


def from_ffmpeg(stderr: str, returncode: int | None, where: str = "the work dir") -> FetchFailure:
    """Classify a failed ffmpeg run by its stderr; a full disk raises ``DiskFullError``."""
    if _DISK_FULL.search(stderr):
        raise disk_full(where)
    forbidden = _HTTP_403.search(stderr)
    if forbidden and "googlevideo.com" in stderr:   # ffmpeg names its input URL: a YouTube stream refused us
        return blocked("HTTP403", f"ffmpeg: {_line_of(stderr, forbidden.start())} (a googlevideo.com stream)")
    for pattern, status, error_class in _FFMPEG_RULES:
        match = pattern.search(stderr)
        if not match:
            continue
        line = _line_of(stderr, match.start())
        if status == "http":
            return from_http_status(int(match.group(1)), f"ffmpeg: {line}")
        return FetchFailure(status, error_class, f"ffmpeg: {line}")
    return transient("FFmpeg", f"ffmpeg failed (exit {returncode}): {_last_error_line(stderr)}")


def _line_of(text: str, position: int) -> str:
    """The line of ``text`` holding ``position``, without ffmpeg's ``[component @ 0x...]`` prefix."""
    begin = text.rfind("\n", 0, position) + 1
    finish = text.find("\n", position)
    line = text[begin: finish if finish >= 0 else len(text)].strip()
    return re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", line)[:300]


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|invalid|failed|not found|refused|timed out|"
                                                  r"returned|prematurely|no space", line, re.I)]
    return (errors or lines or ["no output"])[-1][:300]


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    return (rng or random).uniform(0.0, min(cap, base * 2 ** max(0, attempt - 1)))
