"""One ffmpeg pass per clip: seek into one or two inputs (remote or local) and write both outputs.

Outputs: an MP4 (H.264 yuv420p, short side <= ``max_short_side``, even dimensions,
optional frame-rate cap; AAC at ``mp4_audio_rate`` Hz with the source's channels, at most two)
and a FLAC (``audio_rate`` Hz, ``audio_channels``: the trainer's format), both
covering exactly ``[start, end]`` (accurate input seeking; audio resampled onto the video's
timeline). The outputs are then checked with PyAV: the MP4 must not fall short of
``min(end, source length) - start`` by more than one video frame (the source length is
what ffmpeg reported for its inputs), and the FLAC must match the MP4's audio. A source
without audio gives an MP4 without audio and no FLAC.

What the re-encode would hide is measured on the way and recorded for the filter: the source
video's bits per pixel (a starved source re-encoded at CRF 23 looks like any simple picture)
and the decoder errors ffmpeg logged while reading the segment (a damaged source comes out
as a clean file of concealed, smeared frames).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from valor_data.fetch.config import FetchConfig
from valor_data.fetch.outcome import FetchFailure, from_ffmpeg, permanent, transient
from valor_data.media.ffmpeg import FFmpegError, protocol_options, run_ffmpeg

_HTTP_PROTOCOLS = "http,https,tcp,tls,crypto,httpproxy,hls"
_DURATION_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_SECTION_RE = re.compile(r"^(Input|Output) #(\d+)")
_STREAM_RE = re.compile(r"^\s*Stream #(\d+):\d+.*?: (Video|Audio): (.*)$")
# Fill timestamp gaps: audio stays on the video's timeline. It runs once per clip and is split
# to both outputs: an aresample=async per output made ffmpeg 9.0 wait forever, idle, on a corrupt
# source (a regression test fetches it). Each branch then converts to its own format (no async),
# so the MP4 does not inherit the FLAC's rate and channels through the split.
_ALIGN = "aresample=async=1:first_pts=0"
_LAYOUTS = {1: "mono", 2: "stereo"}
# ffmpeg's own retries of a URL, each request bounded by rw_timeout: at most 3, waiting at most
# 10 s in all where this ffmpeg can bound them (7.1+); clip_timeout_s bounds the whole run anyway
_RECONNECT = ["-reconnect", "1", "-reconnect_on_network_error", "1", "-reconnect_delay_max", "4"]
_RECONNECT_BOUNDS = {"reconnect_max_retries": "3", "reconnect_delay_total_max": "10"}
_MAX_SECONDS = 1e7          # a segment boundary past this (116 days) is no position in a real file
_NO_STREAM = ("does not contain any stream", "matches no streams")
_NETWORK_RE = re.compile(r"Stream ends prematurely|timed out|Connection reset|Error reading HTTP", re.I)
# what a decoder says of damaged input while ffmpeg reads the segment (ffmpeg 7+ tags each line
# with the decoder; "error while decoding MB" is h264's own, older form)
_DECODER_ERROR_RE = re.compile(r"\[dec:\w+ @ [^\]]*\] (?:Error submitting packet to decoder|corrupt decoded frame|"
                               r"Decoding error)|error while decoding MB", re.I)
_SIZE_RE = re.compile(r"(?<![\w/])(\d+)x(\d+)(?=[\s,\[])")      # 1280x720, not the tag 0x31637661
_KBPS_RE = re.compile(r"(\d+(?:\.\d+)?) kb/s")
_FPS_RE = re.compile(r"(\d+(?:\.\d+)?) fps")


@dataclass(frozen=True)
class Source:
    """One ffmpeg input and the streams to take from it."""

    location: str                              # http(s) URL or a local path
    video: bool = True
    audio: bool = True
    headers: tuple[tuple[str, str], ...] = ()  # extra HTTP headers (User-Agent, Cookie, ...)
    proxy: str | None = None
    local_addr: str | None = None              # local IP to bind (tcp ``local_addr``)

    @property
    def remote(self) -> bool:
        return self.location.startswith(("http://", "https://"))


@dataclass
class Normalized:
    """What was written, as measured."""

    duration_s: float
    source_duration_s: float | None
    has_video: bool
    has_audio: bool
    width: int | None
    height: int | None
    bytes: int
    source_bits_per_pixel: float | None = None   # the source video's bitrate / (width x height x fps)
    source_decode_errors: int = 0                # decoder errors while ffmpeg read the segment


@dataclass
class Inputs:
    """What ffmpeg's info log says of its inputs."""

    durations: list[float | None]       # declared duration per input
    streams: dict[int, set[str]]        # input index -> {"Video", "Audio"}
    video: dict[int, str]               # input index -> its first video stream's description


def _input_args(source: Source, start: float | None, duration: float | None, timeout_s: float) -> list[str]:
    args: list[str] = []
    if source.remote:
        args += ["-protocol_whitelist", _HTTP_PROTOCOLS, *_RECONNECT, "-rw_timeout", str(int(timeout_s * 1e6))]
        known = protocol_options("http")
        args += [arg for name, value in _RECONNECT_BOUNDS.items() if name in known for arg in (f"-{name}", value)]
        headers = dict(source.headers)
        if "User-Agent" in headers:
            args += ["-user_agent", headers.pop("User-Agent")]
        if headers:
            args += ["-headers", "".join(f"{k}: {v}\r\n" for k, v in headers.items())]
        if source.proxy:
            args += ["-http_proxy", source.proxy]
        if source.local_addr:
            args += ["-local_addr", source.local_addr]
    else:
        args += ["-protocol_whitelist", "file"]
    location = source.location if source.remote else f"file:{source.location}"
    if start:
        args += ["-ss", f"{start:.6f}"]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    return args + ["-i", location]


def _scale_filter(max_short: int) -> str:
    """Short side <= max_short keeping the aspect ratio; both sides even."""
    w = f"if(lt(iw\\,ih)\\,trunc(min(iw\\,{max_short})/2)*2\\,-2)"
    h = f"if(lt(iw\\,ih)\\,-2\\,trunc(min(ih\\,{max_short})/2)*2)"
    return f"scale=w={w}:h={h}"


def ffmpeg_args(sources: list[Source], start: float | None, end: float | None, mp4: Path, flac: Path | None,
                cfg: FetchConfig) -> list[str]:
    """The whole argument list (after ``ffmpeg -nostdin -hide_banner -loglevel``)."""
    duration = end - (start or 0.0) if end is not None else None
    args = ["-nostats", "-y"]
    for source in sources:
        args += _input_args(source, start, duration, cfg.timeout_s)
    video = next((i for i, s in enumerate(sources) if s.video), None)
    audio = next((i for i, s in enumerate(sources) if s.audio), None)
    if video is not None:
        args += ["-map", f"{video}:V:0?", "-vf", _scale_filter(cfg.max_short_side), "-c:v", "libx264",
                 "-preset", cfg.preset, "-crf", str(cfg.crf), "-pix_fmt", "yuv420p"]
        if cfg.max_fps:
            args += ["-fpsmax", f"{cfg.max_fps:g}"]
        if cfg.keyframe_interval_s:   # short GOPs: sparse frame reads (filter, trainer) decode little
            args += ["-force_key_frames", f"expr:gte(t,n_forced*{cfg.keyframe_interval_s:g})"]
    if audio is not None:
        args += ["-filter_complex", audio_graph(audio, flac is not None, cfg),
                 "-map", "[amp4]", "-c:a", "aac", "-b:a", f"{cfg.aac_kbps}k"]
    args += ["-sn", "-dn", "-threads", str(cfg.ffmpeg_threads), "-movflags", "+faststart",
             "-map_metadata", "-1", "-f", "mp4", str(mp4)]
    if flac is not None and audio is not None:
        args += ["-map", "[aflac]", "-c:a", "flac", "-map_metadata", "-1", "-f", "flac", str(flac)]
    return args


def audio_graph(audio: int, flac: bool, cfg: FetchConfig) -> str:
    """One aligned chain (see _ALIGN) split to the MP4's branch (``mp4_audio_rate``, the source's
    channels up to stereo) and the FLAC's (``audio_rate``, ``audio_channels``)."""
    mp4 = f"aresample={cfg.mp4_audio_rate},aformat=sample_rates={cfg.mp4_audio_rate}:channel_layouts=mono|stereo"
    if not flac:
        return f"[{audio}:a:0]{_ALIGN},{mp4}[amp4]"
    layout = _LAYOUTS.get(cfg.audio_channels, f"{cfg.audio_channels}c")
    return (f"[{audio}:a:0]{_ALIGN},asplit=2[m][f];[m]{mp4}[amp4];"
            f"[f]aresample={cfg.audio_rate},aformat=sample_rates={cfg.audio_rate}:channel_layouts={layout}[aflac]")


def check_segment(start: float | None, end: float | None) -> None:
    """Raise a permanent ``BadSegment`` for bounds ffmpeg cannot take (never worth a retry)."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and not 0 <= value <= _MAX_SECONDS:   # also NaN
            raise permanent("BadSegment", f"{name} {value!r} is not a time in [0, {_MAX_SECONDS:g}] s")
    if start is not None and end is not None and end <= start:
        raise permanent("BadSegment", f"the segment ends ({end:g} s) before it starts ({start:g} s)")


def parse_inputs(stderr: str) -> Inputs:
    """Durations, stream kinds and video stream descriptions of the inputs, from ffmpeg's info log."""
    durations: dict[int, float | None] = {}
    streams: dict[int, set[str]] = {}
    video: dict[int, str] = {}
    section, index = None, -1
    for line in stderr.splitlines():
        head = _SECTION_RE.match(line.strip())
        if head:
            section, index = head.group(1), int(head.group(2))
            if section == "Input":
                durations.setdefault(index, None)
            continue
        if section != "Input":
            continue
        match = _DURATION_RE.search(line)
        if match and durations.get(index) is None:
            h, m, s = match.groups()
            durations[index] = int(h) * 3600 + int(m) * 60 + float(s)
        stream = _STREAM_RE.match(line)
        if stream and "attached pic" not in stream.group(3):
            streams.setdefault(int(stream.group(1)), set()).add(stream.group(2))
            if stream.group(2) == "Video":
                video.setdefault(int(stream.group(1)), stream.group(3))
    return Inputs([durations[i] for i in sorted(durations)], streams, video)


def bits_per_pixel(description: str | None) -> float | None:
    """Bitrate / (width x height x fps) of a video stream as ffmpeg describes it (None when it
    does not give all three: webm streams often carry no bitrate)."""
    text = description or ""
    size, kbps, fps = _SIZE_RE.search(text), _KBPS_RE.search(text), _FPS_RE.search(text)
    if not (size and kbps and fps) or not (pixels := int(size[1]) * int(size[2]) * float(fps[1])):
        return None
    return round(float(kbps[1]) * 1000 / pixels, 5)


def decoder_errors(stderr: str) -> int:
    """How many errors the decoders reported while ffmpeg read the inputs."""
    return len(_DECODER_ERROR_RE.findall(stderr))


def _run(sources, start, end, mp4, flac, cfg) -> str:
    """Run ffmpeg; retry once with the streams that exist when an output would be empty."""
    args = ffmpeg_args(sources, start, end, mp4, flac, cfg)
    try:
        return run_ffmpeg(args, timeout=cfg.clip_timeout_s, loglevel="info", die_with_parent=True
                          ).stderr.decode("utf-8", "replace")
    except FFmpegError as exc:
        stderr = exc.stderr or str(exc)
        if exc.returncode is None:
            raise transient("Timeout", f"ffmpeg ran longer than {cfg.clip_timeout_s:g} s") from None
        if not any(message in stderr for message in _NO_STREAM):
            raise from_ffmpeg(stderr, exc.returncode, str(mp4.parent)) from None
    streams = parse_inputs(stderr).streams
    present = [Source(s.location, s.video and "Video" in streams.get(i, ()),
                      s.audio and "Audio" in streams.get(i, ()), s.headers, s.proxy) for i, s in enumerate(sources)]
    if not any(s.video or s.audio for s in present):
        raise permanent("NoStreams", "the source has neither an audio nor a video stream")
    try:
        return run_ffmpeg(ffmpeg_args(present, start, end, mp4, flac, cfg), timeout=cfg.clip_timeout_s,
                          loglevel="info", die_with_parent=True).stderr.decode("utf-8", "replace")
    except FFmpegError as exc:
        if exc.returncode is None:
            raise transient("Timeout", f"ffmpeg ran longer than {cfg.clip_timeout_s:g} s") from None
        raise from_ffmpeg(exc.stderr or str(exc), exc.returncode, str(mp4.parent)) from None


def normalize(sources: list[Source], start: float | None, end: float | None, mp4: Path, flac: Path,
              cfg: FetchConfig, known_duration: float | None = None) -> Normalized:
    """Cut ``[start, end]`` from ``sources`` into ``mp4`` and ``flac`` and check what came out.

    ``known_duration`` is the source length when the caller knows it better than the
    known inputs do (a section download holds only the section). ``flac`` is removed when the
    source has no audio.
    """
    check_segment(start, end)
    stderr = _run(sources, start, end, mp4, flac, cfg)
    inputs = parse_inputs(stderr)
    lengths = [d for d in inputs.durations if d] if known_duration is None else [known_duration]
    source_len = min(lengths) if lengths else None
    done = _check(mp4, flac, start or 0.0, end, source_len, stderr, cfg)
    video = inputs.video[min(inputs.video)] if inputs.video else None
    return replace(done, source_bits_per_pixel=bits_per_pixel(video), source_decode_errors=decoder_errors(stderr))


def _check(mp4: Path, flac: Path, start: float, end: float | None, source_len: float | None, stderr: str,
           cfg: FetchConfig) -> Normalized:
    """Measure both outputs; raise when they do not cover what was asked of the source."""
    from valor_data.fetch.probe import probe

    video = probe(mp4)
    audio = probe(flac) if flac.exists() and flac.stat().st_size else None
    if audio is None and flac.exists():
        flac.unlink()
    if source_len is not None and source_len <= start:
        raise permanent("SegmentAfterEnd", f"the source is {source_len:.2f} s long; the segment starts at {start:g} s")
    if not (video.has_video or video.has_audio):
        raise _short(0.0, None, stderr)
    aac_frame = 1024 / (video.sample_rate or 44100)
    tolerance = (1.0 / (video.fps or 25.0) if video.has_video else max(0.04, aac_frame)) + 1e-3
    _check_duration(video.duration, start, end, source_len, tolerance, stderr)
    if video.has_audio and (video.sample_rate != cfg.mp4_audio_rate or not 1 <= (video.channels or 0) <= 2):
        raise permanent("BadOutput", f"the MP4's audio is {video.sample_rate} Hz x{video.channels}, "
                                     f"not {cfg.mp4_audio_rate} Hz x1-2")
    if audio is not None:
        if (audio.sample_rate, audio.channels) != (cfg.audio_rate, cfg.audio_channels):
            raise permanent("BadOutput", f"FLAC is {audio.sample_rate} Hz x{audio.channels}, "
                                         f"not {cfg.audio_rate} Hz x{cfg.audio_channels}")
        if abs(audio.duration - (video.audio_duration or 0.0)) > max(tolerance, aac_frame + 1e-3):
            raise permanent("BadOutput", f"FLAC lasts {audio.duration:.3f} s but the MP4's audio "
                                         f"{video.audio_duration or 0.0:.3f} s")
    return Normalized(video.duration, source_len, video.has_video, audio is not None, video.width, video.height,
                      mp4.stat().st_size + (flac.stat().st_size if audio is not None else 0))


def _check_duration(got: float, start: float, end: float | None, source_len: float | None, tolerance: float,
                    stderr: str) -> None:
    """Not shorter than ``min(end, source length) - start`` by more than one frame; a source whose
    data ends a little before its declared length (at most 0.5 s or 5 %) is accepted when the
    segment runs to its end. (Longer is not checked: ffmpeg stops reading at ``end``, and a
    variable-frame-rate source's last frame may simply be shown for long.)"""
    requested = end - start if end is not None else None
    bounds = [x for x in (requested, source_len - start if source_len is not None else None) if x is not None]
    if not bounds:
        return
    expected = min(bounds)
    gap = expected - got
    runs_to_end = source_len is not None and (end is None or end >= source_len)
    if gap > tolerance and not (runs_to_end and gap <= max(0.5, 0.05 * expected) and not _NETWORK_RE.search(stderr)):
        raise _short(got, expected, stderr)


def _short(got: float, expected: float | None, stderr: str, what: str = "output") -> FetchFailure:
    message = f"{what} lasts {got:.3f} s, expected {expected:.3f} s" if expected else f"{what} is empty"
    if _NETWORK_RE.search(stderr):
        return transient("ShortOutput", f"{message} (the transfer broke off)")
    return permanent("ShortOutput", f"{message}: the source is truncated or damaged")
