"""The torch filterbank against an independent numpy reference of Kaldi's definition."""

import io
import math
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from valor_data.train import audio  # noqa: E402

EPS = float(np.finfo(np.float32).eps)


GEOMETRY = {16000: (400, 160, 512), 22050: (551, 220, 1024)}    # 25 ms window, 10 ms shift, FFT size


def kaldi_fbank_reference(wave: np.ndarray, sample_rate=16000, bins=64) -> np.ndarray:
    """Kaldi's compute-fbank-feats (snip edges, DC removal, pre-emphasis 0.97, hanning window,
    power spectrum of the window padded to a power of two, triangular mel banks from 20 Hz to
    Nyquist, log), frame by frame."""
    win, shift, nfft = GEOMETRY[sample_rate]

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


@pytest.mark.parametrize("rate", [16000, 22050])
def test_fbank_matches_reference(rate):
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ours = audio.fbank(torch.from_numpy(wave), rate).numpy()
    ref = kaldi_fbank_reference(wave, rate)
    win, shift, _ = GEOMETRY[rate]
    assert audio.frame_geometry(rate) == GEOMETRY[rate]
    assert ours.shape == ref.shape == (1 + (wave.size - win) // shift, 64)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


@pytest.mark.parametrize("rate", [16000, 22050])
def test_fbank_shape_and_tone_peak(rate):
    t = torch.arange(rate) / rate
    feats = audio.fbank(0.5 * torch.sin(2 * math.pi * 1000 * t), rate)
    assert feats.shape == (98, 64)                                   # 1 s: 1 + (16000 - 400) // 160, 1 + (22050 - 551) // 220
    mel_low, mel_high = 1127 * math.log1p(20 / 700), 1127 * math.log1p(rate / 2 / 700)
    centres = [700 * (math.exp((mel_low + (b + 1) * (mel_high - mel_low) / 65) / 1127) - 1) for b in range(64)]
    peak = int(feats.mean(0).argmax())
    assert abs(centres[peak] - 1000) < 80


def test_slices_are_normalised_and_padded_like_ast():
    wave = torch.randn(3 * 16000) * 0.1
    feats = audio.fbank(wave, 16000)                                 # 298 frames
    slices = audio.audio_slices(wave, n=1, sample_rate=16000)
    assert slices.shape == (1, 512, 64)
    torch.testing.assert_close(slices[0, :298], (feats - audio.AST_MEAN) / (2 * audio.AST_STD))
    padding = (0 - audio.AST_MEAN) / (2 * audio.AST_STD)
    assert torch.allclose(slices[0, 298:], torch.full((214, 64), padding))


def test_long_clip_slices_one_window_per_segment():
    wave = torch.randn(12 * 16000) * 0.1
    feats = audio.fbank(wave, 16000)                                 # 1198 frames, two segments of 599
    slices = audio.audio_slices(wave, n=2, sample_rate=16000)
    torch.testing.assert_close(slices[1], audio.normalise(feats[642:1154]))   # centred in segment 2
    starts = audio.slice_starts(1198, 2, 512, random.Random(0))
    assert 0 <= starts[0] <= 87 and 599 <= starts[1] <= 686


def _flac(samples: np.ndarray, rate: int) -> bytes:
    soundfile = pytest.importorskip("soundfile")
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format="FLAC")
    return buf.getvalue()


def test_read_flac_averages_stereo():
    stereo = np.stack([np.full(1600, 0.5), np.full(1600, -0.25)], axis=1).astype(np.float32)
    wave = audio.read_flac(_flac(stereo, 16000), 16000)             # at the file's rate: no resampling
    assert wave.shape == (1600,) and wave.mean().item() == pytest.approx(0.125, abs=1e-3)


def test_read_flac_resamples_16k_shards_to_valors_rate():
    t = np.arange(2 * 16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    wave = audio.read_flac(_flac(tone, 16000))                       # the default: VALOR's 22.05 kHz
    assert audio.SAMPLE_RATE == 22050 and wave.shape == (2 * 22050,)
    spectrum = np.abs(np.fft.rfft(wave.numpy()[2000:-2000]))
    peak_hz = spectrum.argmax() * 22050 / (wave.numel() - 4000)
    assert abs(peak_hz - 1000) < 2                                   # the tone keeps its pitch
    assert np.abs(wave.numpy()[2000:-2000]).max() == pytest.approx(0.5, abs=0.01)
    assert torch.equal(wave, audio.read_flac(_flac(tone, 16000)))   # deterministic
