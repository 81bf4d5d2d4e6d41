"""Measure a clip: numbers from sampled gray thumbnails and from the decoded audio.

Per-frame and per-sample classifications use fixed, documented levels (ffmpeg's
``blackdetect`` defaults for black pictures); clip-level thresholds live in
``FilterConfig`` and are applied to these numbers by ``checks``.
"""

from __future__ import annotations

import math

import numpy as np

BLACK_LUMA = 32           # a pixel is dark at luma <= 32 of 255 (blackdetect pix_th 0.10, full range)
BLACK_PIXELS = 0.98       # a frame is black when 98% of its pixels are dark (blackdetect pic_th)
FLAT_RANGE = 10.0         # a frame is flat (one colour) when the 2nd..98th percentiles of its
                          # 32x32 block means span <= 10 luma levels (a small logo does not count)
GRID = 32                 # thumbnails are averaged into GRID x GRID blocks for flatness and hashing
BAR_LUMA = 24             # a border row/column is a bar when its mean luma <= 24 (black) ...
BAR_STD = 4.0             # ... and its luma varies by at most 4 (std): no picture in it
MOTION_PERCENTILE = 99.5  # motion: the luma change exceeded by 0.5% of the picture (a moving
                          # object counts, codec noise over a still picture does not)
AUDIO_WINDOW_S = 0.1      # audio is judged on 100 ms windows: a window is silent when its RMS
SILENCE_DBFS = -60.0      # is below -60 dBFS, and clipped when it is loud (peak >= -6 dBFS) and
CLIP_LOUD = 0.5           # flat-topped: half of its samples lie within 10% of its peak (a sine
CLIP_PLATEAU = 0.9        # spends 29% of its time there, noise and speech almost none; a clipped
CLIP_SHARE = 0.5          # wave most of it, at full scale or wherever a later gain moved it)
_FLOOR = 1e-10


def grids(stack: np.ndarray) -> np.ndarray:
    """(n, H, W) thumbnails -> (n, 32, 32) float32 block means (H, W multiples of 32)."""
    n, h, w = stack.shape
    if not n:
        return np.zeros((0, GRID, GRID), np.float32)
    return stack.reshape(n, GRID, h // GRID, GRID, w // GRID).astype(np.float32).mean(axis=(2, 4))


def frame_classes(stack: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(black, flat) booleans per thumbnail; a black frame is not also counted flat."""
    if not len(stack):
        return np.zeros(0, bool), np.zeros(0, bool)
    black = (stack <= BLACK_LUMA).mean(axis=(1, 2)) >= BLACK_PIXELS
    lo, hi = np.percentile(grid.reshape(len(grid), -1), [2, 98], axis=1)
    return black, (hi - lo <= FLAT_RANGE) & ~black


def motion_score(stack: np.ndarray, packets: int) -> float | None:
    """How much consecutive samples differ (0..255), the median over the sampled pairs.

    Per pair: the absolute luma change that 0.5% of the picture exceeds. One picture for
    the whole clip is static (0); with fewer than two samples of a longer stream motion
    cannot be judged (None).
    """
    if len(stack) < 2:
        return 0.0 if packets == 1 else None
    diffs = np.abs(np.diff(stack.astype(np.int16), axis=0)).reshape(len(stack) - 1, -1)
    return round(float(np.median(np.percentile(diffs, MOTION_PERCENTILE, axis=1))), 2)


def _bars(lines: np.ndarray) -> np.ndarray:
    """(n, L, M) -> per frame, how many leading lines are a dark, empty bar."""
    bar = (lines.mean(axis=2) <= BAR_LUMA) & (lines.std(axis=2) <= BAR_STD)
    return np.where(bar.all(axis=1), bar.shape[1], np.argmin(bar, axis=1))


def letterbox(stack: np.ndarray, width: int, height: int) -> dict:
    """Black bars present in every given frame, as the crop (px) that removes them."""
    crop = {"crop_top": 0, "crop_bottom": 0, "crop_left": 0, "crop_right": 0}
    if not len(stack) or not width or not height:
        return {**crop, "border_fraction": None}
    _, h, w = stack.shape
    rows, cols = stack.astype(np.float32), stack.transpose(0, 2, 1).astype(np.float32)
    top, bottom = _bars(rows).min(), _bars(rows[:, ::-1]).min()
    left, right = _bars(cols).min(), _bars(cols[:, ::-1]).min()
    if top + bottom >= h or left + right >= w:      # all bar: nothing to crop to
        return {**crop, "border_fraction": None}
    crop = {"crop_top": _even(top * height / h), "crop_bottom": _even(bottom * height / h),
            "crop_left": _even(left * width / w), "crop_right": _even(right * width / w)}
    kept = (height - crop["crop_top"] - crop["crop_bottom"]) * (width - crop["crop_left"] - crop["crop_right"])
    return {**crop, "border_fraction": round(1.0 - kept / (width * height), 4)}


def _even(px: float) -> int:
    return int(px) // 2 * 2


def video_metrics(stack: np.ndarray, black: np.ndarray, flat: np.ndarray, packets: int, width: int,
                  height: int) -> dict:
    """black/uniform fractions, motion and letterbox from the sampled thumbnails and their classes."""
    n = len(stack)
    if not n:
        return {"sampled_frames": 0, "black_fraction": None, "uniform_fraction": None,
                "motion_score": motion_score(stack, packets), **letterbox(stack, width, height)}
    return {
        "sampled_frames": n,
        "black_fraction": round(float(black.mean()), 4),
        "uniform_fraction": round(float(flat.mean()), 4),
        "motion_score": motion_score(stack, packets),
        **letterbox(stack[~(black | flat)], width, height),
    }


def mono(audio: np.ndarray) -> np.ndarray:
    """(channels, samples) -> the channel average (samples,)."""
    mix = audio[0].copy()
    for channel in audio[1:]:
        mix += channel
    if len(audio) > 1:
        mix *= 1.0 / len(audio)
    return mix


def _dbfs(value: float) -> float:
    return round(20.0 * math.log10(max(value, _FLOOR)), 2)


def audio_metrics(audio: np.ndarray | None, mix: np.ndarray | None, rate: int) -> dict:
    """Loudness, silence and clipping of decoded audio ((channels, samples) and its mono mix)."""
    if audio is None or mix is None or audio.size == 0 or not rate:
        return {"audio_s": 0.0 if audio is not None else None, "rms_dbfs": None, "peak_dbfs": None,
                "silent_fraction": None, "clipped_fraction": None}
    peak = np.abs(audio[0])
    for channel in audio[1:]:
        np.maximum(peak, np.abs(channel), out=peak)
    window = min(max(1, int(rate * AUDIO_WINDOW_S)), len(mix))
    usable = len(mix) // window * window
    power = np.square(mix[:usable], dtype=np.float64).reshape(-1, window).mean(axis=1)
    window_db = 10.0 * np.log10(np.maximum(power, _FLOOR ** 2))
    peaks = peak[:usable].reshape(-1, window)
    top = peaks.max(axis=1)
    plateau = (peaks >= CLIP_PLATEAU * top[:, None]).mean(axis=1)
    return {
        "audio_s": round(audio.shape[1] / rate, 3),
        "rms_dbfs": _dbfs(math.sqrt(float(power.mean()))),
        "peak_dbfs": _dbfs(float(top.max())),
        "silent_fraction": round(float((window_db < SILENCE_DBFS).mean()), 4),
        "clipped_fraction": round(float(((top >= CLIP_LOUD) & (plateau >= CLIP_SHARE)).mean()), 4),
    }
