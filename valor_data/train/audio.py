"""Audio features for AST: a Kaldi-style log-mel filterbank computed in torch, cut into slices.

Follows ``torchaudio.compliance.kaldi.fbank`` as AST uses it (25 ms Hanning window, 10 ms
shift, no dither, DC removal, pre-emphasis 0.97, 512-point FFT power spectrum, mel banks
from 20 Hz to Nyquist, log with a float eps floor), then AST's AudioSet normalisation
``(x - mean) / (2 * std)``. The waveform is float in [-1, 1], as AST feeds it.
"""

from __future__ import annotations

import io
import random

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
MEL_BINS = 64
SLICE_FRAMES = 512
WINDOW = 400          # 25 ms at 16 kHz
SHIFT = 160           # 10 ms
FFT_SIZE = 512        # the window padded to a power of two
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
AST_MEAN = -4.2677393
AST_STD = 4.5689974


def _mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(freq / 700.0)


def mel_banks(n_mels: int = MEL_BINS, fft_size: int = FFT_SIZE, sample_rate: int = SAMPLE_RATE,
              low_freq: float = LOW_FREQ) -> torch.Tensor:
    """Kaldi's triangular mel filters, [n_mels, fft_size // 2 + 1] (the Nyquist column is zero)."""
    mel_low, mel_high = _mel(torch.tensor(low_freq)), _mel(torch.tensor(sample_rate / 2))
    delta = (mel_high - mel_low) / (n_mels + 1)
    left = mel_low + torch.arange(n_mels) * delta
    centre, right = left + delta, left + 2 * delta
    fft_mel = _mel(torch.arange(fft_size // 2) * sample_rate / fft_size)
    up = (fft_mel[None] - left[:, None]) / (centre - left)[:, None]
    down = (right[:, None] - fft_mel[None]) / (right - centre)[:, None]
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))


_BANKS = mel_banks()
_WINDOW = torch.hann_window(WINDOW, periodic=False, dtype=torch.float64).float()


def fbank(wave: torch.Tensor) -> torch.Tensor:
    """Log-mel filterbank of a 16 kHz mono waveform [samples] -> [frames, 64]."""
    wave = wave.float()
    if wave.numel() < WINDOW:
        wave = F.pad(wave, (0, WINDOW - wave.numel()))
    frames = wave.unfold(0, WINDOW, SHIFT)                        # [T, 400], snip_edges
    frames = frames - frames.mean(dim=1, keepdim=True)            # remove the DC offset
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # x[-1] := x[0]
    frames = (frames - PREEMPHASIS * previous) * _WINDOW
    frames = F.pad(frames, (0, FFT_SIZE - WINDOW))
    power = torch.fft.rfft(frames).abs().pow(2)                   # [T, 257]
    energies = power @ _BANKS.T                                   # [T, 64]
    return torch.log(torch.clamp(energies, min=torch.finfo(torch.float32).eps))


def normalise(features: torch.Tensor) -> torch.Tensor:
    """AST's AudioSet normalisation."""
    return (features - AST_MEAN) / (2 * AST_STD)


def slice_starts(frames: int, n: int, length: int, rng: random.Random | None) -> list[int]:
    """Where ``n`` windows of ``length`` frames start: consecutive from 0 when the clip is
    short, else one per equal segment (random offset in training, centred at test)."""
    if frames <= n * length:
        return [i * length for i in range(n)]
    segment = frames / n
    starts = []
    for i in range(n):
        lo, hi = int(i * segment), max(int(i * segment), int((i + 1) * segment) - length)
        hi = min(hi, frames - length)
        starts.append(rng.randint(lo, hi) if rng is not None else (lo + hi) // 2)
    return starts


def audio_slices(wave: torch.Tensor, n: int = 1, length: int = SLICE_FRAMES,
                 rng: random.Random | None = None) -> torch.Tensor:
    """Waveform -> ``n`` normalised filterbank slices [n, length, 64] (zero-padded like AST)."""
    features = fbank(wave)
    out = torch.zeros(n, length, features.shape[1])
    for i, start in enumerate(slice_starts(features.shape[0], n, length, rng)):
        piece = features[start:start + length]
        out[i, :piece.shape[0]] = piece
    return normalise(out)


def read_flac(data: bytes) -> torch.Tensor:
    """FLAC bytes -> float waveform [samples]; must be 16 kHz (stereo is averaged)."""
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"audio is {rate} Hz, the shard format has {SAMPLE_RATE} Hz")
    return torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))

