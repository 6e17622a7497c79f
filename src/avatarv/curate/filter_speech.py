"""Cascade step 3 (seed: audio quality / speech presence): speech activity with silero-vad (real offline
weights, ONNX) and a noise check by spectral flatness.

A training clip needs a talking voice: silence, music-less noise and hum are rejected. Flatness (geometric /
arithmetic mean of the Welch power spectrum) is near 1 for white noise and far below it for voiced speech.
"""

from __future__ import annotations

import functools

import numpy as np

from .checks import Check, fail, ok

NAME = "speech"
RATE = 16000


@functools.lru_cache(maxsize=1)
def _vad():
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=True)


def speech_fraction(audio16k: np.ndarray, threshold: float) -> float:
    """Share of the clip's samples inside silero-vad speech segments."""
    import torch
    from silero_vad import get_speech_timestamps

    if audio16k.size < RATE // 10:
        return 0.0
    torch.set_num_threads(1)
    segs = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio16k, dtype=np.float32)), _vad(),
                                 threshold=threshold, sampling_rate=RATE)
    return float(sum(s["end"] - s["start"] for s in segs) / audio16k.size)


def spectral_flatness(audio16k: np.ndarray) -> float:
    from scipy.signal import welch

    if audio16k.size < 512:
        return 1.0
    _, pxx = welch(audio16k.astype(np.float64), fs=RATE, nperseg=512)
    pxx = pxx[1:] + 1e-20
    return float(np.exp(np.mean(np.log(pxx))) / np.mean(pxx))


def check(ctx) -> Check:
    c, a = ctx.cfg, ctx.audio16k
    rms = float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) if a.size else 0.0
    v = dict(speech_frac=speech_fraction(a, c.vad_threshold), spectral_flatness=spectral_flatness(a),
             audio_rms_db=20 * np.log10(rms + 1e-10))
    if v["speech_frac"] < c.min_speech_frac:
        return fail(NAME, f"speech fraction {v['speech_frac']:.2f} < {c.min_speech_frac} (silence or no voice)", **v)
    if v["spectral_flatness"] > c.max_spectral_flatness:
        return fail(NAME, f"noisy audio: spectral flatness {v['spectral_flatness']:.2f} > {c.max_spectral_flatness}", **v)
    return ok(NAME, **v)
