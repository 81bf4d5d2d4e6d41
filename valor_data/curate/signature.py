"""A compact per-clip signature that survives re-encoding and rescaling.

- Frames: a 64-bit perceptual hash (DCT pHash) of each sampled thumbnail's 32x32 block
  means: the signs of the 8x8 lowest DCT coefficients against their median. A black or
  flat picture carries no information and hashes to 0, which never matches anything.
  Hashes find candidate pairs; an 8x8 luma thumbnail per frame (64 bytes) confirms them:
  different clips over similar backgrounds share most hash bits, never their pixels.
- Audio: a Haitsma-Kalker style fingerprint, one 32-bit word per 100 ms: the sign of the
  change over time of the energy differences between 33 log-spaced bands (250-4000 Hz).
  Band energies are floored relative to the clip's loudness, so silence and empty bands
  give stable zero bits instead of noise.
"""

from __future__ import annotations

import functools

import numpy as np

FP_FRAME_S = 0.2           # fingerprint analysis window ...
FP_HOP_S = 0.1             # ... and hop: one word per 100 ms
FP_BANDS = 33              # 33 bands -> 32 bits per word
FP_LOW_HZ, FP_HIGH_HZ = 250.0, 4000.0
FP_FLOOR = 1e-3            # band energies are floored at 0.1% of the clip's mean band energy
FP_RATE = 8000             # audio is averaged down to about 8 kHz first (bands end at 4 kHz)
_WEIGHTS64 = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
_WEIGHTS32 = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))


@functools.lru_cache(maxsize=1)
def _dct_matrix(n: int = 32) -> np.ndarray:
    k = np.arange(8)[:, None]             # only the 8 lowest frequencies are ever used
    x = np.arange(n)[None, :]
    return (np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)).astype(np.float32)


def frame_hashes(grid: np.ndarray, informative: np.ndarray) -> list[int]:
    """64-bit pHash per (32, 32) block-mean grid; 0 where ``informative`` is False."""
    if not len(grid):
        return []
    dct = _dct_matrix(grid.shape[1])
    low = (dct @ grid @ dct.T).reshape(len(grid), 64)             # (n, 8, 8) -> (n, 64)
    bits = low > np.median(low[:, 1:], axis=1, keepdims=True)
    hashes = (bits.astype(np.uint64) * _WEIGHTS64).sum(axis=1, dtype=np.uint64)
    return [int(h) if ok else 0 for h, ok in zip(hashes, informative, strict=True)]


def frame_tiny(grid: np.ndarray) -> bytes:
    """Each (32, 32) grid averaged to 8x8 uint8 luma, frames concatenated (64 bytes each)."""
    n = len(grid)
    tiny = grid.reshape(n, 8, 4, 8, 4).mean(axis=(2, 4)) if n else np.zeros((0, 8, 8))
    return np.clip(np.rint(tiny), 0, 255).astype(np.uint8).tobytes()


@functools.lru_cache(maxsize=16)
def _band_bins(rate: float, n_fft: int) -> tuple[int, int, np.ndarray]:
    """(first bin, end bin, band start offsets) of FP_BANDS log-spaced bands, none empty."""
    edges = np.geomspace(FP_LOW_HZ, min(FP_HIGH_HZ, 0.45 * rate), FP_BANDS + 1)
    bins = np.ceil(edges * n_fft / rate).astype(int)
    bins = np.maximum(bins, np.arange(len(bins)) + bins[0])     # keep every band non-empty
    return int(bins[0]), int(bins[-1]), bins[:-1] - bins[0]


@functools.lru_cache(maxsize=16)
def _window(n: int) -> np.ndarray:
    return np.hanning(n).astype(np.float32)


def _decimate(mix: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """Average groups of samples down to about FP_RATE (a crude, cheap low-pass)."""
    step = max(1, rate // FP_RATE)
    if step == 1:
        return mix, float(rate)
    n = len(mix) // step
    out = mix[0: n * step: step].copy()
    for offset in range(1, step):
        out += mix[offset: n * step: step]
    return out * (1.0 / step), rate / step


def audio_fingerprint(mix: np.ndarray | None, rate: int) -> list[int]:
    """32-bit words, one per 100 ms of mono audio; [] without (enough) audio."""
    if mix is None or not rate:
        return []
    signal, rate = _decimate(mix, rate)
    frame, hop = int(rate * FP_FRAME_S), int(rate * FP_HOP_S)
    if len(signal) < frame + 2 * hop:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(signal, frame)[::hop]
    power = np.abs(np.fft.rfft(windows * _window(frame), axis=1)) ** 2
    first, last, offsets = _band_bins(rate, frame)
    energy = np.add.reduceat(power[:, first:last], offsets, axis=1)   # (frames, FP_BANDS); no BLAS
    log_energy = np.log(energy + FP_FLOOR * max(float(energy.mean()), 1e-12))
    across = log_energy[:, :-1] - log_energy[:, 1:]               # (frames, 32)
    bits = (across[1:] - across[:-1]) > 0                          # its change over time
    return (bits.astype(np.uint32) * _WEIGHTS32).sum(axis=1, dtype=np.uint32).tolist()
