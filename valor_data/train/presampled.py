"""Pre-sampled training inputs, stored as extra shard members beside the mp4 and the FLAC.

Decoding H.264 and computing the filterbank is most of a sample's CPU cost; build-shards can
do it once (``shards.presampled_frames``) and the trainer then reads:

- ``<key>.jpgs``: for each of N uniform segments (``video.segments``) K candidate frames, JPEG
  at the training size and resize mode (``video.resize_frame``: ``squash`` or ``crop``), behind
  a JSON header line (``n``, ``k``, ``size``, ``resize``, ``total``, the frame ``index`` and
  byte ``length`` of each candidate, segment by segment; a header without ``resize`` is
  ``crop``, as every member was before the mode was recorded). Candidates are spread evenly
  over their segment, the middle one (index ``k // 2``) being the frame the video path picks
  at test time. Training picks one candidate per segment at random, test time the middle one.
- ``<key>.fbank_<settings>.npy``: the clip's whole log-mel filterbank [frames, mel bins] as
  float16 (before slicing and AST normalisation); ``<settings>`` is a hash of the audio
  settings it was computed with (``fbank_ext``), so a member made under other settings is
  not found and the trainer computes from the FLAC instead.

``frames`` and ``fbank`` use the members when they fit the sample shape and resize mode, else
the video and audio paths: the output shape and the frame choice rule are the same either way.
"""

from __future__ import annotations

import hashlib
import io
import json
import random

import numpy as np

from valor_data.train import audio, video

FRAMES_EXT = "jpgs"
FBANK_PREFIX = "fbank_"
FORMAT = 1


# -- which frames -----------------------------------------------------------------------------
def candidates(total: int, n: int, k: int) -> list[list[int]]:
    """K frame indices in each of ``n`` uniform segments of ``total`` frames, evenly spread;
    the ``k // 2``-th is the segment's middle frame (``video.frame_indices`` at test time)."""
    grid = []
    for first, last in video.segments(total, n):
        span = last - first + 1
        picks = [first + (2 * j + 1) * span // (2 * k) for j in range(k)]
        picks[k // 2] = (first + last) // 2
        grid.append([min(total - 1, p) for p in picks])
    return grid


def choose(k: int, n: int, rng: random.Random | None) -> list[int]:
    """Which candidate of each segment: a random one (training) or the middle one."""
    return [rng.randrange(k) if rng else k // 2 for _ in range(n)]


# -- writing (build-shards) -------------------------------------------------------------------
def frames_member(mp4: bytes, n: int, k: int, size: int, quality: int = 90, resize: str = "crop") -> bytes:
    """The ``jpgs`` member of a clip: K candidates per segment, JPEG at ``size``, resized as ``resize``."""
    import av
    from PIL import Image

    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        total = video.frame_count(container, stream)
        grid = candidates(total, n, k)
        wanted = sorted({i for row in grid for i in row})
        decoded = dict(zip(wanted, video.pick_frames(container, stream, wanted), strict=True))
        crops = {i: video.resize_frame(frame, size, resize) for i, frame in decoded.items()}
    jpegs = {}
    for i, crop in crops.items():
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(crop.transpose(1, 2, 0))).save(out, "JPEG", quality=quality)
        jpegs[i] = out.getvalue()
    order = [i for row in grid for i in row]
    head = {"format": FORMAT, "n": n, "k": k, "size": size, "resize": resize, "total": total, "index": order,
            "length": [len(jpegs[i]) for i in order]}
    return json.dumps(head, sort_keys=True, separators=(",", ":")).encode() + b"\n" + b"".join(jpegs[i] for i in order)


def audio_settings(sample_rate: int) -> dict:
    """Everything the stored filterbank depends on."""
    return {"format": FORMAT, "sample_rate": sample_rate, "mel_bins": audio.MEL_BINS, "frame_ms": audio.FRAME_MS,
            "shift_ms": audio.SHIFT_MS, "preemphasis": audio.PREEMPHASIS, "low_freq": audio.LOW_FREQ,
            "dtype": "float16"}


def fbank_ext(sample_rate: int) -> str:
    """The filterbank member's extension under the current audio settings."""
    digest = hashlib.sha256(json.dumps(audio_settings(sample_rate), sort_keys=True).encode()).hexdigest()
    return f"{FBANK_PREFIX}{digest[:12]}.npy"


def fbank_member(flac: bytes, sample_rate: int) -> bytes:
    """The clip's whole filterbank as a float16 ``.npy``."""
    features = audio.fbank(audio.read_flac(flac, sample_rate), sample_rate).numpy().astype(np.float16)
    out = io.BytesIO()
    np.save(out, features, allow_pickle=False)
    return out.getvalue()


def is_member(ext: str) -> bool:
    """Whether a member extension is a pre-sampled one (any settings)."""
    return ext == FRAMES_EXT or (ext.startswith(FBANK_PREFIX) and ext.endswith(".npy"))


# -- reading (the trainer) --------------------------------------------------------------------
def read_frames(blob: bytes, n: int, size: int, rng: random.Random | None,
                resize: str = "crop") -> np.ndarray | None:
    """uint8 [n, 3, size, size] from a ``jpgs`` member, or None when it holds another shape or
    resize mode."""
    from PIL import Image

    line, _, body = blob.partition(b"\n")
    head = json.loads(line)
    shape = (head.get("format"), head.get("n"), head.get("size"), head.get("resize", "crop"))
    if shape != (FORMAT, n, size, resize):
        return None
    k, ends = head["k"], np.cumsum([0, *head["length"]])
    out = np.empty((n, 3, size, size), np.uint8)
    for segment, pick in enumerate(choose(k, n, rng)):
        at = segment * k + pick
        with Image.open(io.BytesIO(body[ends[at]:ends[at + 1]])) as image:
            out[segment] = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    return out


def frames(sample: dict, spec, rng: random.Random | None) -> np.ndarray:
    """A sample's frames: from its ``jpgs`` member when it fits ``spec``, else decoded from the mp4."""
    if FRAMES_EXT in sample:
        found = read_frames(sample[FRAMES_EXT], spec.frames, spec.image_size, rng, spec.resize)
        if found is not None:
            return found
    return video.decode_frames(sample["mp4"], spec.frames, spec.image_size, rng, spec.resize)


def fbank(sample: dict, spec, rng: random.Random | None):
    """A sample's normalised filterbank slices [n, length, mel bins]: from its filterbank member
    when one was made under the current settings, else computed from the FLAC."""
    import torch

    raw = sample.get(fbank_ext(spec.audio_rate))
    if raw is None:
        wave = audio.read_flac(sample["flac"], spec.audio_rate)
        return audio.audio_slices(wave, spec.audio_slices, spec.slice_frames, rng, spec.audio_rate)
    features = torch.from_numpy(np.load(io.BytesIO(raw), allow_pickle=False).astype(np.float32))
    out = torch.zeros(spec.audio_slices, spec.slice_frames, features.shape[1])
    for i, start in enumerate(audio.slice_starts(features.shape[0], spec.audio_slices, spec.slice_frames, rng)):
        piece = features[start:start + spec.slice_frames]
        out[i, :piece.shape[0]] = piece
    return audio.normalise(out)
