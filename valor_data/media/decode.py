"""Read a clip in one pass: all of its audio, and video frames only at a few sample times.

Packets are read in file order. Audio packets are decoded as they come (audio is cheap).
Video packets are kept, undecoded, from the last keyframe on, and decoded only when the
stream reaches the next sample time, so each sample costs the frames between its keyframe
and itself: a few with a keyframe every second or two, up to every earlier frame when a
clip holds a single keyframe. Frames no other frame refers to (most B-frames) are never
decoded: a sample is the first reference frame at or after its time.

Problems are counted, never raised: an exception from the demuxer or a decoder, a frame
the decoder flags as corrupt, and every error libav logs while the clip is read. They are
evidence about the file for the quality checks.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import av
import av.logging
import numpy as np
from av.video.reformatter import VideoReformatter

THUMB_W, THUMB_H = 128, 96     # sampled frames as gray thumbnails (4x3 blocks of a 32x32 grid)
_INT_SCALE = {"s16": 32768.0, "s16p": 32768.0, "s32": 2147483648.0, "s32p": 2147483648.0}


@dataclass
class Problems:
    """Errors met while reading: how many, and the first one's message."""

    count: int = 0
    first: str | None = None

    def add(self, message: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = message.strip()


@dataclass
class Decoded:
    """What one pass over a clip measured."""

    thumbs: list[np.ndarray] = field(default_factory=list)   # gray uint8 (THUMB_H, THUMB_W) per sample
    thumb_times: list[float] = field(default_factory=list)   # presentation time of each sample (s)
    video_packets: int = 0
    video_keyframes: int = 0
    video_bytes: int = 0
    video_start_s: float | None = None
    video_end_s: float | None = None        # last packet's time plus its duration
    frames_decoded: int = 0
    audio: np.ndarray | None = None         # (channels, samples) float32 at ``sample_rate``
    sample_rate: int = 0
    problems: Problems = field(default_factory=Problems)
    late_stream: bool = False               # a stream probing had not found appeared: reading stopped there


@contextlib.contextmanager
def libav_errors(problems: Problems) -> Iterator[None]:
    """Count every error libav logs inside the block (restoring the previous log settings).

    Repeats are not folded: PyAV would otherwise hold back a message that repeats the
    previous clip's last one, and the next clip would be blamed for it.
    """
    previous, folded = av.logging.get_level(), av.logging.get_skip_repeated()
    if previous is None or previous < av.logging.ERROR:
        av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture() as logs:
            yield
    finally:
        av.logging.set_skip_repeated(folded)
        av.logging.set_level(previous)
    for level, name, message in logs:
        if level <= av.logging.ERROR:
            problems.add(f"[{name}] {message}")


def read_media(container: av.container.InputContainer, slots: Sequence[tuple[float, float]],
               max_seconds: float | None = None, problems: Problems | None = None) -> Decoded:
    """Decode all audio, and one video frame per slot ``(start, end)`` (seconds, presentation time).

    A slot's frame is a keyframe inside it when there is one (one frame to decode), else
    the frame at its start, decoded from the keyframe before it. Errors libav only logs
    are counted when this runs inside ``libav_errors(problems)``.
    """
    out = Decoded(problems=problems if problems is not None else Problems())
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    for stream in (video, audio):
        if stream is not None:
            stream.thread_count = 1      # one core per worker: decode threads would only contend
    if video is not None:
        video.codec_context.skip_frame = "NONREF"   # B-frames nothing refers to: never needed to reach a sample
    sampler = _FrameSampler(video, slots, out) if video is not None else None
    sink = _AudioSink(audio, out.problems, max_seconds) if audio is not None else None
    try:
        _pump(container, video, sampler, sink, out, max_seconds)
    except av.FFmpegError as exc:
        out.problems.add(f"demux: {exc}")
    if sampler is not None:
        sampler.finish()
    if sink is not None:
        out.audio, out.sample_rate = sink.finish()
    return out


def _pump(container, video, sampler, sink, out: Decoded, max_seconds: float | None) -> None:
    """Read packets in file order: audio to the sink, video counted and offered to the sampler."""
    streams = [s for s in (video, sink.stream if sink else None) if s is not None]
    if not streams:
        return
    video_index = video.index if video is not None else -1
    time_base = float(video.time_base) if video is not None and video.time_base else 0.0
    limit = None
    for packet in _packets(container, streams, out):
        size = packet.size
        if not size:
            continue
        if packet.stream_index != video_index:
            sink.feed(packet)
            continue
        ts = packet.pts if packet.pts is not None else packet.dts
        t = ts * time_base if ts is not None and time_base else None
        out.video_packets += 1
        out.video_bytes += size
        if packet.is_keyframe:
            out.video_keyframes += 1
        if t is not None:
            if limit is None:
                limit = t + max_seconds if max_seconds else float("inf")
                out.video_start_s = t
            if t > limit:
                break
            end = t + packet.duration * time_base if packet.duration else t
            out.video_start_s = min(out.video_start_s, t)
            out.video_end_s = end if out.video_end_s is None else max(out.video_end_s, end)
        sampler.feed(packet, t)


def _packets(container, streams, out: Decoded) -> Iterator:
    """``container.demux(streams)``, ending (``out.late_stream`` set) at a packet of a stream
    probing did not find: PyAV knows only the probed streams and raises IndexError there."""
    packets = container.demux(streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except IndexError:
            out.late_stream = True
            return
        yield packet


class _FrameSampler:
    """Decode video only where a slot needs a frame, from the nearest keyframe before it."""

    def __init__(self, stream, slots: Sequence[tuple[float, float]], out: Decoded):
        self.stream = stream
        self.slots = sorted(slots)
        self.index = 0                      # the first slot without a frame
        self.target: float | None = None    # the time whose frame is being decoded for that slot
        self.buffer: deque = deque()        # packets not decoded yet, from the last keyframe on
        self.out = out
        self.reformatter = VideoReformatter()   # keeps its scaler between frames

    def feed(self, packet, t: float | None) -> None:
        if self.index >= len(self.slots):
            return
        if t is not None:       # slots passed without a keyframe: decode up to their start
            while self.target is None and self.index < len(self.slots) and t >= self.slots[self.index][1]:
                self.target = self.slots[self.index][0]
                self._advance()
        if packet.is_keyframe and self.target is None and self.index < len(self.slots):
            if self.buffer:                 # skip the undecoded stretch: restart clean here
                self.buffer.clear()
                self.stream.codec_context.flush_buffers()
            start, end = self.slots[self.index]
            if t is not None and start <= t < end:
                self.target = t
        self.buffer.append(packet)
        if self.target is not None:
            self._advance()

    def finish(self) -> None:
        """Give every open slot what is left of the stream, then drain the decoder."""
        if self.index < len(self.slots) and (self.buffer or self.target is not None):
            if self.target is None:
                self.target = self.slots[self.index][0]
            self._advance()
            self._decode(None)
        self.buffer.clear()

    def _advance(self) -> None:
        while self.buffer and self.target is not None:
            self._decode(self.buffer.popleft())

    def _decode(self, packet) -> None:
        try:
            frames = self.stream.decode(packet)
        except av.FFmpegError as exc:
            self.out.problems.add(f"video decode: {exc}")
            return
        for frame in frames:
            self._take(frame)

    def _take(self, frame) -> None:
        self.out.frames_decoded += 1
        if frame.is_corrupt:
            self.out.problems.add("video decode: frame flagged corrupt")
        when = frame.time
        if self.target is None or (when is not None and when < self.target - 1e-3):
            return
        thumb = self.reformatter.reformat(frame, width=THUMB_W, height=THUMB_H, format="gray8",
                                          interpolation="AREA")
        self.out.thumbs.append(thumb.to_ndarray())
        self.out.thumb_times.append(when if when is not None else float("nan"))
        self.index += 1
        self.target = None
        while when is not None and self.index < len(self.slots) and when >= self.slots[self.index][1]:
            self.index += 1                 # frames sparser than slots: this one covered them


class _AudioSink:
    """Decode every audio packet into float32 (channels, samples) chunks."""

    def __init__(self, stream, problems: Problems, max_seconds: float | None):
        self.stream = stream
        self.problems = problems
        self.rate = stream.codec_context.sample_rate or 0
        self.max_samples = int(max_seconds * self.rate) if max_seconds and self.rate else None
        self.chunks: list[list[np.ndarray]] = []   # per frame: one array per channel
        self.samples = 0

    def feed(self, packet) -> None:
        if self.max_samples is not None and self.samples >= self.max_samples:
            return
        try:
            frames = self.stream.decode(packet)
        except av.FFmpegError as exc:
            self.problems.add(f"audio decode: {exc}")
            return
        for frame in frames:
            if frame.is_corrupt:
                self.problems.add("audio decode: frame flagged corrupt")
            if not self.rate:
                self.rate = frame.sample_rate
            self.chunks.append(frame_samples(frame))
            self.samples += frame.samples

    def finish(self) -> tuple[np.ndarray | None, int]:
        try:
            for frame in self.stream.decode(None):
                self.chunks.append(frame_samples(frame))
                self.samples += frame.samples
        except av.FFmpegError as exc:
            self.problems.add(f"audio decode: {exc}")
        if not self.chunks:
            return None, self.rate
        if len({len(c) for c in self.chunks}) > 1:     # the layout changed mid-stream: mix down
            self.chunks = [[np.mean(c, axis=0)] for c in self.chunks]
        channels = len(self.chunks[0])
        return np.stack([np.concatenate([c[i] for c in self.chunks]) for i in range(channels)]), self.rate


def frame_samples(frame) -> list[np.ndarray]:
    """An audio frame as one float32 array per channel, in [-1, 1] (any sample format)."""
    n, fmt = frame.samples, frame.format.name
    channels = frame.layout.nb_channels
    if fmt == "fltp":
        return [np.frombuffer(p, np.float32, n) for p in frame.planes[:channels]]
    data = frame.to_ndarray()
    if not frame.format.is_planar:
        data = data.reshape(n, channels).T
    if fmt.startswith("u8"):
        data = (data.astype(np.float32) - 128.0) / 128.0
    else:
        data = data.astype(np.float32) / _INT_SCALE.get(fmt, 1.0)
    return list(data)
