"""Decode a sample's members the way a trainer would, and say what is wrong with them."""

from __future__ import annotations

import io
import json

MAX_SHORT_SIDE = 360
SAMPLE_RATE = 16_000


def check_mp4(data: bytes) -> str | None:
    """None when the mp4 holds H.264 video (short side <= 360) and audio, and every frame decodes."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            video = [s for s in container.streams if s.type == "video"]
            audio = [s for s in container.streams if s.type == "audio"]
            if not video or not audio:
                return "mp4 lacks a video or an audio stream"
            ctx = video[0].codec_context
            if ctx.name != "h264":
                return f"mp4 video codec is {ctx.name}, not h264"
            if min(ctx.width, ctx.height) > MAX_SHORT_SIDE:
                return f"mp4 is {ctx.width}x{ctx.height}: short side over {MAX_SHORT_SIDE}"
            frames = sum(1 for _ in container.decode(video[0]))
    except (av.FFmpegError, ValueError, OSError) as exc:
        return f"mp4 does not decode: {exc}"
    return None if frames else "mp4 has no video frames"


def check_flac(data: bytes) -> str | None:
    """None when the flac decodes as 16 kHz mono with at least one frame."""
    import soundfile as sf

    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        return f"flac does not decode: {exc}"
    if rate != SAMPLE_RATE or audio.shape[1] != 1:
        return f"flac is {rate} Hz with {audio.shape[1]} channel(s), not {SAMPLE_RATE} Hz mono"
    return None if len(audio) else "flac holds no audio"


def check_text(key: str, split: str, meta: bytes, text: bytes) -> str | None:
    """None when the json names this key and split and the txt is its first caption."""
    try:
        doc = json.loads(meta.decode("utf-8"))
        caption = text.decode("utf-8")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"json/txt do not decode: {exc}"
    if not isinstance(doc, dict) or doc.get("clip_id") != key or doc.get("split") != split:
        return f"json says clip {doc.get('clip_id') if isinstance(doc, dict) else '?'} of split " \
               f"{doc.get('split') if isinstance(doc, dict) else '?'}"
    captions = doc.get("captions") or []
    if caption != (captions[0] if captions else ""):
        return "txt is not the first caption of the json"
    return None


def sample_problems(key: str, split: str, members: dict[str, bytes]) -> list[str]:
    """Every problem found decoding one complete sample (members by extension)."""
    found = [check_mp4(members["mp4"]), check_flac(members["flac"]),
             check_text(key, split, members["json"], members["txt"])]
    return [p for p in found if p]
