"""Audio features for AST: a Kaldi-style log-mel filterbank computed in torch, cut into slices.

As VALOR computes them (``data/data.py`` ``AudioMapper`` of TXH-mercury/VALOR: torchaudio's
``kaldi.fbank`` with a Hanning window, no dither, 64 mel bins, 10 ms shift, 512-frame slices)
at VALOR's sample rate, 22.05 kHz (its ``utils/extract_frame_and_wav_multiprocess.py`` writes
``audio_22050hz``): 25 ms window (551 samples), 10 ms shift (220), DC removal, pre-emphasis
0.97, the window zero-padded to a power of two (1024), power spectrum, mel banks from 20 Hz
to Nyquist, log with a float eps floor; then AST's AudioSet normalisation
``(x - mean) / (2 * std)``. The shards carry 16 kHz FLAC (the shard format); ``read_flac``
resamples to the model's ``audio_rate``, the one place the rate is set (``ModelConfig``).
"""

from __future__ import annotations

import functools
import io
import random

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 22050   # VALOR's (utils/extract_frame_and_wav_multiprocess.py: sr=22050)
MEL_BINS = 64         # config/*.json "audio_melbins": 64
SLICE_FRAMES = 512    # "audio_target_length": 512
FRAME_MS = 25.0       # torchaudio's kaldi.fbank default frame_length
SHIFT_MS = 10.0       # "audio_frame_shift": 10
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
AST_MEAN = -4.2677393  # "audio_mean"
AST_STD = 4.5689974    # "audio_std"


def _mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(freq / 700.0)


def frame_geometry(sample_rate: int) -> tuple[int, int, int]:
    """(window, shift, FFT size) in samples at ``sample_rate``, as Kaldi rounds them."""
    window, shift = int(sample_rate * FRAME_MS / 1000), int(sample_rate * SHIFT_MS / 1000)
    return window, shift, 1 << (window - 1).bit_length()


def mel_banks(n_mels: int = MEL_BINS, fft_size: int = 1024, sample_rate: int = SAMPLE_RATE,
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


@functools.lru_cache(maxsize=8)
def _tables(sample_rate: int, n_mels: int) -> tuple[torch.Tensor, torch.Tensor]:
    window, _, fft_size = frame_geometry(sample_rate)
    hann = torch.hann_window(window, periodic=False, dtype=torch.float64).float()
    return mel_banks(n_mels, fft_size, sample_rate), hann


def fbank(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, n_mels: int = MEL_BINS) -> torch.Tensor:
    """Log-mel filterbank of a mono waveform at ``sample_rate`` [samples] -> [frames, n_mels]."""
    window, shift, fft_size = frame_geometry(sample_rate)
    banks, hann = _tables(sample_rate, n_mels)
    wave = wave.float()
    if wave.numel() < window:
        wave = F.pad(wave, (0, window - wave.numel()))
    frames = wave.unfold(0, window, shift)                        # [T, window], snip_edges
    frames = frames - frames.mean(dim=1, keepdim=True)            # remove the DC offset
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # x[-1] := x[0]
    frames = (frames - PREEMPHASIS * previous) * hann
    frames = F.pad(frames, (0, fft_size - window))
    power = torch.fft.rfft(frames).abs().pow(2)                   # [T, fft_size // 2 + 1]
    energies = power @ banks.T                                    # [T, n_mels]
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


def audio_slices(wave: torch.Tensor, n: int = 1, length: int = SLICE_FRAMES, rng: random.Random | None = None,
                 sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Waveform -> ``n`` normalised filterbank slices [n, length, 64] (zero-padded like AST)."""
    features = fbank(wave, sample_rate)
    out = torch.zeros(n, length, features.shape[1])
    for i, start in enumerate(slice_starts(features.shape[0], n, length, rng)):
        piece = features[start:start + length]
        out[i, :piece.shape[0]] = piece
    return normalise(out)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """A mono float32 waveform from ``rate`` to ``target`` Hz (libswresample through PyAV)."""
    if rate == target or wave.size == 0:
        return wave
    import av

    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave, dtype=np.float32)[None], format="flt",
                                       layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    out = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in out]) if out else np.zeros(0, np.float32)


def read_flac(data: bytes, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """FLAC bytes -> float waveform [samples] at ``sample_rate`` (channels averaged, resampled
    from the file's rate when it differs)."""
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(resample(samples.mean(axis=1), rate, sample_rate)))
