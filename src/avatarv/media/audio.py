"""Mono float32 audio: load (wav directly, anything else through PyAV), resample, write wav atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import MediaError
from .atomic import atomic_path


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy), float32 mono."""
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(audio.astype(np.float64), sr_out // g, sr_in // g).astype(np.float32)


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Return (mono float32 in [-1, 1], rate); resampled to `sample_rate` if given."""
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "file not found")
    if path.suffix.lower() in (".wav", ".flac", ".ogg"):
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001 - soundfile raises several types for broken files
            raise MediaError(path, f"unreadable audio ({type(e).__name__}: {e})") from None
        audio = data.mean(axis=1)
    else:
        from .video import read_video

        v = read_video(path, need_audio=True, video=False)
        audio, sr = v.audio, v.sample_rate
    if audio.size == 0:
        raise MediaError(path, "audio stream is empty")
    if sample_rate:
        audio, sr = resample(audio, sr, sample_rate), sample_rate
    return audio.astype(np.float32), int(sr)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1, 1).astype(np.float32), int(sample_rate), subtype="PCM_16", format="WAV")
    return Path(path)
