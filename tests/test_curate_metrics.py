"""Clip measurements and signatures on constructed pictures and sounds."""

from __future__ import annotations

import numpy as np
import pytest

from valor_data.curate import metrics, signature
from valor_data.media.decode import THUMB_H, THUMB_W

RATE = 16000
rng = np.random.default_rng(0)


def _picture(seed: int, noise: float = 2.0) -> np.ndarray:
    """A textured gray picture (smooth blobs) with a little noise."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:THUMB_H, 0:THUMB_W]
    img = 128 + sum(40 * np.sin(x / r.uniform(5, 30) + r.uniform(0, 6)) * np.cos(y / r.uniform(5, 30))
                    for _ in range(3))
    return np.clip(img + r.normal(0, noise, img.shape), 0, 255).astype(np.uint8)


def _stack(*pictures) -> np.ndarray:
    return np.stack(pictures)


def test_black_and_flat_frames_are_told_apart():
    black = np.full((THUMB_H, THUMB_W), 16, np.uint8)
    grey = np.full((THUMB_H, THUMB_W), 130, np.uint8)
    logo = grey.copy()
    logo[:6, :6] = 250                              # a small logo on a blank screen is still blank
    stack = _stack(black, grey, logo, _picture(1))
    is_black, is_flat = metrics.frame_classes(stack, metrics.grids(stack))
    assert is_black.tolist() == [True, False, False, False]
    assert is_flat.tolist() == [False, True, True, False]


def test_motion_sees_a_small_moving_object_but_not_codec_noise():
    base = _picture(2, noise=0)
    moved = [base.copy() for _ in range(4)]
    for i, frame in enumerate(moved):
        frame[40:52, 10 + 20 * i: 22 + 20 * i] = 250     # a 12x12 square crossing the picture
    noisy = [np.clip(base + rng.normal(0, 0.6, base.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    assert metrics.motion_score(np.stack(moved), 100) > 50
    assert metrics.motion_score(np.stack(noisy), 100) < 5
    assert metrics.motion_score(np.stack([base]), 1) == 0.0      # one picture for the whole clip
    assert metrics.motion_score(np.stack([base]), 50) is None    # one sample of many frames: unknown


def test_letterbox_crop_in_source_pixels():
    frames = []
    for seed in (3, 4):
        picture = _picture(seed)
        picture[:12] = 0                       # 12 of 96 rows -> 45 px of 360
        picture[-12:] = 2
        picture[:, :8] = 1                     # 8 of 128 columns -> 40 px of 640
        frames.append(picture)
    crop = metrics.letterbox(np.stack(frames), 640, 360)
    assert (crop["crop_top"], crop["crop_bottom"], crop["crop_left"], crop["crop_right"]) == (44, 44, 40, 0)
    assert crop["border_fraction"] == pytest.approx(1 - (360 - 88) * 600 / (640 * 360), abs=1e-3)
    # a bar must be in every frame to count
    partial = metrics.letterbox(np.stack([frames[0], _picture(5)]), 640, 360)
    assert partial["crop_top"] == 0 and partial["border_fraction"] == 0.0


def _audio_metrics(signal: np.ndarray) -> dict:
    audio = signal.astype(np.float32)[None, :]
    return metrics.audio_metrics(audio, metrics.mono(audio), RATE)


def test_silence_tone_and_clipping():
    t = np.arange(RATE * 3) / RATE
    sine = 0.3 * np.sin(2 * np.pi * 440 * t)
    clipped = np.clip(4 * np.sin(2 * np.pi * 440 * t), -1, 1)
    quiet = _audio_metrics(np.zeros_like(t) + rng.normal(0, 1e-5, t.shape))
    assert quiet["silent_fraction"] == 1.0 and quiet["rms_dbfs"] < -90
    tone = _audio_metrics(sine)
    assert tone["silent_fraction"] == 0.0 and tone["clipped_fraction"] == 0.0
    assert tone["rms_dbfs"] == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.1)
    assert _audio_metrics(clipped)["clipped_fraction"] == 1.0
    assert _audio_metrics(0.7 * clipped)["clipped_fraction"] == 1.0      # clipped, then turned down
    loud_noise = np.clip(rng.normal(0, 0.3, t.shape), -1, 1)
    assert _audio_metrics(loud_noise)["clipped_fraction"] == 0.0


def test_mono_mix_and_missing_audio():
    stereo = np.stack([np.ones(10, np.float32), np.zeros(10, np.float32)])
    assert metrics.mono(stereo).tolist() == [0.5] * 10
    assert metrics.audio_metrics(None, None, 0)["rms_dbfs"] is None


def test_frame_hash_survives_noise_and_separates_pictures():
    a, b = _picture(6), _picture(7)
    noisy = np.clip(a + rng.normal(0, 3, a.shape), 0, 255).astype(np.uint8)
    stack = np.stack([a, noisy, b, np.full_like(a, 90)])
    hashes = signature.frame_hashes(metrics.grids(stack), np.array([True, True, True, False]))
    assert bin(hashes[0] ^ hashes[1]).count("1") <= 4
    assert bin(hashes[0] ^ hashes[2]).count("1") >= 16
    assert hashes[3] == 0                                  # no information, never matches
    assert len(signature.frame_tiny(metrics.grids(stack))) == 4 * 64


def test_audio_fingerprint_is_stable_and_specific():
    noise = rng.normal(0, 0.2, RATE * 4).astype(np.float32)
    other = rng.normal(0, 0.2, RATE * 4).astype(np.float32)
    again = noise + rng.normal(0, 0.01, noise.shape).astype(np.float32)     # a lossy copy
    fp = np.array(signature.audio_fingerprint(noise, RATE), np.uint32)
    assert len(fp) == 38                                  # a word per 100 ms step between windows
    def ber(x, y):
        return np.bitwise_count(x ^ y).sum() / (32 * len(x))
    assert ber(fp, np.array(signature.audio_fingerprint(again, RATE), np.uint32)) < 0.15
    assert ber(fp, np.array(signature.audio_fingerprint(other, RATE), np.uint32)) > 0.4
    assert not any(signature.audio_fingerprint(np.zeros(RATE * 2, np.float32), RATE))
    assert signature.audio_fingerprint(noise[:1000], RATE) == []
    assert signature.audio_fingerprint(None, 0) == []
