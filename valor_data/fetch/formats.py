"""Choose formats from a yt-dlp ``extract_info`` dict: pure functions, no network.

YouTube offers DASH video-only and audio-only formats (plus storyboards, HLS and a
progressive 360p). We take the video-only format whose short side is the smallest at
or above the target (else the largest below), preferring the configured codecs and a
frame rate within the cap, and the audio-only format (original language, not DRC) of
the preferred codec nearest at or above the target bitrate. When there is no such pair
(a direct media URL gives one format of unknown codecs), we take the muxed format
nearest the target instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from valor_data.fetch.config import YouTubeConfig

# protocols ffmpeg reads directly; DASH fragments, f4m, ism and storyboards are left out
PROTOCOLS = {"https": 0, "http": 0, "m3u8_native": 1, "m3u8": 1}


@dataclass(frozen=True)
class Selection:
    """A video format and an audio format (the same dict for a muxed format; None: absent)."""

    video: dict | None
    audio: dict | None

    @property
    def muxed(self) -> bool:
        return self.video is not None and self.video is self.audio

    @property
    def ids(self) -> str:
        if self.muxed:
            return str(self.video.get("format_id"))
        return "+".join(str(f.get("format_id")) for f in (self.video, self.audio) if f is not None)


def _codec(value) -> str | None:
    """'none' -> None (absent), None -> '?' (unknown), else the codec string."""
    if value == "none":
        return None
    return value or "?"


def _usable(fmt: dict) -> bool:
    return (str(fmt.get("url") or "").startswith(("https://", "http://"))
            and PROTOCOLS.get(fmt.get("protocol") or "https") is not None
            and not fmt.get("has_drm") and fmt.get("ext") != "mhtml"
            and "storyboard" not in str(fmt.get("format_note") or "").lower()
            and (_codec(fmt.get("vcodec")) or _codec(fmt.get("acodec"))) is not None)


def short_side(fmt: dict) -> int | None:
    width, height = fmt.get("width"), fmt.get("height")
    if width and height:
        return min(int(width), int(height))
    return int(height) if height else None


def _rank(value: str | None, preference: list[str]) -> int:
    value = (value or "").lower()
    return next((i for i, p in enumerate(preference) if value.startswith(p.lower())), len(preference))


def _video_key(fmt: dict, cfg: YouTubeConfig, target: int, max_fps: float | None) -> tuple:
    side = short_side(fmt)
    fps = fmt.get("fps") or 0
    return (side is None,
            0 if side is not None and side >= target else 1,
            (side - target) if side is not None and side >= target else -(side or 0),
            fps > (max_fps or 30),
            _rank(fmt.get("vcodec"), cfg.video_codecs),
            PROTOCOLS.get(fmt.get("protocol") or "https", 9),
            fmt.get("tbr") or fmt.get("vbr") or 0)


def _audio_key(fmt: dict, cfg: YouTubeConfig) -> tuple:
    abr = fmt.get("abr") or fmt.get("tbr") or 0
    note = f"{fmt.get('format_id')} {fmt.get('format_note') or ''}".lower()
    return (-(fmt.get("language_preference") or 0),
            "drc" in note,
            abr < cfg.audio_kbps,
            _rank(fmt.get("acodec"), cfg.audio_codecs),
            abs(abr - cfg.audio_kbps),
            PROTOCOLS.get(fmt.get("protocol") or "https", 9))


def select_formats(info: dict, cfg: YouTubeConfig, max_short_side: int,
                   max_fps: float | None = None) -> Selection | None:
    """The formats to cut from, or None when ``info`` offers nothing ffmpeg can read."""
    formats = [f for f in (info.get("formats") or [info]) if _usable(f)]
    video_only = [f for f in formats if _codec(f.get("vcodec")) and _codec(f.get("acodec")) is None]
    audio_only = [f for f in formats if _codec(f.get("acodec")) and _codec(f.get("vcodec")) is None]
    muxed = [f for f in formats if _codec(f.get("vcodec")) and _codec(f.get("acodec"))]
    best_video = min(video_only, key=lambda f: _video_key(f, cfg, max_short_side, max_fps), default=None)
    best_audio = min(audio_only, key=lambda f: _audio_key(f, cfg), default=None)
    best_muxed = min(muxed, key=lambda f: _video_key(f, cfg, max_short_side, max_fps), default=None)
    if best_muxed is not None and (cfg.prefer_progressive or best_video is None or best_audio is None):
        return Selection(best_muxed, best_muxed)
    if best_video is not None or best_audio is not None:
        return Selection(best_video, best_audio)
    return None


def available_at(selection: Selection) -> float | None:
    """When the selected formats may be read: yt-dlp's ``available_at`` (Unix seconds; YouTube's
    pre-roll ad wait), the latest of the selection's; None when no format carries one."""
    times = [f.get("available_at") for f in (selection.video, selection.audio) if f and f.get("available_at")]
    return float(max(times)) if times else None
