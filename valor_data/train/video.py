"""Video frames for CLIP: N frames from uniform segments of a clip, each resized to S x S.

Two resize modes (``RESIZE_MODES``): ``squash`` scales the frame to S x S, the aspect ratio not
kept (VALOR's default ``video_transforms: none``, ``Resize((S, S))`` in ``data/data.py``);
``crop`` scales its short side to S and keeps the centre (VALOR's ``crop_flip`` test transform).

A frame at time t costs decoding every frame since the keyframe before t. When the clip has at
least one keyframe per sampled frame (fetch writes one a second) each frame is reached by a
seek to its keyframe; otherwise the packets are decoded once, up to the last frame needed.
"""

from __future__ import annotations

import io
import random

import numpy as np

RESIZE_MODES = ("squash", "crop")


def segments(total: int, n: int) -> list[tuple[int, int]]:
    """``n`` uniform segments of ``total`` frames: (first, last) frame of each (never empty)."""
    edges = np.linspace(0, total, n + 1)
    return [(int(lo), max(int(lo), int(np.ceil(hi)) - 1)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def frame_indices(total: int, n: int, rng: random.Random | None) -> list[int]:
    """``n`` uniform segments of ``total`` frames; a random frame of each (training) or its middle."""
    return [min(total - 1, rng.randint(first, last) if rng else (first + last) // 2)
            for first, last in segments(total, n)]


def frame_count(container, stream) -> int:
    """Frames in the stream as its header says (else duration x rate), at least 1."""
    if stream.frames:
        return stream.frames
    seconds = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1e6
    return max(1, round(seconds * float(stream.average_rate or 25)))


def in_one_pass(packets: list, wanted: list[int]) -> list:
    """Decode ``packets`` in order up to the last frame ``wanted`` (the last frame decoded stands in
    for any the stream turns out not to have)."""
    picked, index, last = {}, -1, None
    for packet in packets:
        for frame in packet.decode():
            index, last = index + 1, frame
            if index in wanted:
                picked[index] = frame
        if index >= wanted[-1]:
            break
    if last is None:
        raise ValueError("no video frames")
    return [picked.get(i, last) for i in wanted]


def by_seeking(container, stream, wanted: list[int]) -> list:
    """Each wanted frame by seeking to the keyframe before it and decoding up to it."""
    fps = float(stream.average_rate or stream.guessed_rate or 25)
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    frames = []
    for index in wanted:
        target = start + index / fps
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
        frame = None
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= target - 0.5 / fps:
                break
        if frame is None:
            raise ValueError("no video frames")
        frames.append(frame)
    return frames


def resize_frame(frame, size: int, mode: str) -> np.ndarray:
    """A decoded frame -> uint8 [3, size, size]: ``squash`` (the whole picture scaled to size x
    size) or ``crop`` (short side to ``size``, centre crop)."""
    if mode == "squash":
        width = height = size
    elif mode == "crop":
        scale = size / min(frame.width, frame.height)
        width, height = max(size, round(frame.width * scale)), max(size, round(frame.height * scale))
    else:
        raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, not {mode!r}")
    rgb = frame.to_ndarray(width=width, height=height, format="rgb24")
    top, left = (height - size) // 2, (width - size) // 2
    return rgb[top:top + size, left:left + size].transpose(2, 0, 1)


def pick_frames(container, stream, wanted: list[int]) -> list:
    """The frames ``wanted`` (sorted indices): by keyframe seeks when the stream has at least one
    keyframe per wanted frame, else in one pass (both give the same frames)."""
    packets = list(container.demux(stream))              # cheap: no decoding
    keyframes = sum(p.is_keyframe for p in packets)
    return by_seeking(container, stream, wanted) if keyframes >= len(wanted) else in_one_pass(packets, wanted)


def decode_frames(data: bytes, n: int, size: int, rng: random.Random | None, resize: str = "crop") -> np.ndarray:
    """``n`` frames of an mp4 -> uint8 [n, 3, size, size], resized as ``resize`` (``resize_frame``)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        wanted = frame_indices(frame_count(container, stream), n, rng)
        return np.stack([resize_frame(frame, size, resize) for frame in pick_frames(container, stream, wanted)])
