"""The torch filterbank against an independent numpy reference of Kaldi's definition."""

import io
import math
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from valor_data.train import audio  # noqa: E402

EPS = float(np.finfo(np.float32).eps)


def kaldi_fbank_reference(wave: np.ndarray, sample_rate=16000, bins=64) -> np.ndarray:
    """Kaldi's compute-fbank-feats (snip edges, DC removal, pre-emphasis 0.97, hanning window,
    512-point power spectrum, triangular mel banks from 20 Hz to Nyquist, log), frame by frame."""
    win, shift, nfft = 400, 160, 512

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    low, high = mel(20.0), mel(sample_rate / 2)
    delta = (high - low) / (bins + 1)
    banks = np.zeros((bins, nfft // 2 + 1))
    for b in range(bins):
        left, centre, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        for k in range(nfft // 2):
            m = mel(k * sample_rate / nfft)
            if left < m < right:
                banks[b, k] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / (win - 1))
    rows = []
    for t in range(1 + (len(wave) - win) // shift):
        x = wave[t * shift:t * shift + win].astype(np.float64)
        x = x - x.mean()
        y = np.empty_like(x)
        y[0] = x[0] - 0.97 * x[0]
        y[1:] = x[1:] - 0.97 * x[:-1]
        spectrum = np.abs(np.fft.rfft(y * window, nfft)) ** 2
        rows.append(np.log(np.maximum(banks @ spectrum, EPS)))
    return np.array(rows)


def test_fbank_matches_reference():
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * 16000)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ours = audio.fbank(torch.from_numpy(wave)).numpy()
    ref = kaldi_fbank_reference(wave)
    assert ours.shape == ref.shape == (1 + (wave.size - 400) // 160, 64)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


def test_fbank_shape_and_tone_peak():
    t = torch.arange(16000) / 16000
    feats = audio.fbank(0.5 * torch.sin(2 * math.pi * 1000 * t))
    assert feats.shape == (98, 64)                                   # 1 s: 1 + (16000 - 400) // 160
    mel_low, mel_high = 1127 * math.log1p(20 / 700), 1127 * math.log1p(8000 / 700)
    centres = [700 * (math.exp((mel_low + (b + 1) * (mel_high - mel_low) / 65) / 1127) - 1) for b in range(64)]
    peak = int(feats.mean(0).argmax())
    assert abs(centres[peak] - 1000) < 80


def test_slices_are_normalised_and_padded_like_ast():
    wave = torch.randn(3 * 16000) * 0.1
    feats = audio.fbank(wave)                                        # 298 frames
    slices = audio.audio_slices(wave, n=1)
    assert slices.shape == (1, 512, 64)
    torch.testing.assert_close(slices[0, :298], (feats - audio.AST_MEAN) / (2 * audio.AST_STD))
    padding = (0 - audio.AST_MEAN) / (2 * audio.AST_STD)
    assert torch.allclose(slices[0, 298:], torch.full((214, 64), padding))


def test_long_clip_slices_one_window_per_segment():
    wave = torch.randn(12 * 16000) * 0.1
    feats = audio.fbank(wave)                                        # 1198 frames, two segments of 599
    slices = audio.audio_slices(wave, n=2)
    torch.testing.assert_close(slices[1], audio.normalise(feats[642:1154]))   # centred in segment 2
    starts = audio.slice_starts(1198, 2, 512, random.Random(0))
    assert 0 <= starts[0] <= 87 and 599 <= starts[1] <= 686


def test_read_flac_requires_16k_mono_or_averages_stereo():
    soundfile = pytest.importorskip("soundfile")
    stereo = np.stack([np.full(1600, 0.5), np.full(1600, -0.25)], axis=1).astype(np.float32)
    buf = io.BytesIO()
    soundfile.write(buf, stereo, 16000, format="FLAC")
    wave = audio.read_flac(buf.getvalue())
    assert wave.shape == (1600,) and wave.mean().item() == pytest.approx(0.125, abs=1e-3)
    buf = io.BytesIO()
    soundfile.write(buf, stereo, 44100, format="FLAC")
    with pytest.raises(ValueError, match="44100 Hz"):
        audio.read_flac(buf.getvalue())
