"""Log-mel features for the audio condition (seed: "audio → per-frame features"; ARCHITECTURE.md §Audio).

80 mel bins at 100 frames/s (10 ms hop, 25 ms Hann window), so a 25 fps video frame owns exactly 4 mel frames.
Pure numpy (rfft + a Slaney-style triangular filterbank on the HTK mel scale), deterministic on every machine.
Frame i is centred on sample i*hop (the signal is reflect-padded by half a window); N = len(audio) // hop frames.
"""

from __future__ import annotations

import numpy as np

N_MELS = 80
FRAME_RATE = 100  # mel frames per second
WINDOW_S = 0.025
LOG_FLOOR = 1e-5


def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_center_frequencies(sample_rate: int, n_mels: int = N_MELS, fmin: float = 0.0, fmax: float | None = None):
    """Centre frequency (Hz) of each mel filter."""
    fmax = sample_rate / 2 if fmax is None else fmax
    return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))[1:-1]


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = N_MELS, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular filters, area-normalised so loudness does not depend on filter width."""
    fmax = sample_rate / 2 if fmax is None else fmax
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    fb = np.maximum(0.0, np.minimum(lower, upper))
    fb *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return fb.astype(np.float32)


def log_mel(audio: np.ndarray, sample_rate: int, n_mels: int = N_MELS) -> np.ndarray:
    """Mono float audio -> (n_mels, len(audio) // (sample_rate/100)) float32 natural-log mel power."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"log_mel: expected mono 1-D audio, got shape {audio.shape}")
    if sample_rate % FRAME_RATE:
        raise ValueError(f"log_mel: sample_rate {sample_rate} must be a multiple of {FRAME_RATE} Hz")
    hop = sample_rate // FRAME_RATE
    win = int(round(WINDOW_S * sample_rate))
    n_fft = 1 << (win - 1).bit_length()
    n = len(audio) // hop
    if n == 0:
        return np.zeros((n_mels, 0), np.float32)
    pad = n_fft // 2
    mode = "reflect" if len(audio) > pad else "constant"
    x = np.pad(audio.astype(np.float64), (pad, pad), mode=mode)
    idx = np.arange(n)[:, None] * hop + np.arange(n_fft)[None, :]
    window = np.zeros(n_fft)
    start = (n_fft - win) // 2
    window[start : start + win] = np.hanning(win + 1)[:-1]  # periodic Hann, centred in the FFT frame
    power = np.abs(np.fft.rfft(x[idx] * window[None, :], axis=1)) ** 2
    mel = mel_filterbank(sample_rate, n_fft, n_mels).astype(np.float64) @ power.T
    return np.log(np.maximum(mel, LOG_FLOOR)).astype(np.float32)
