"""Speaker embeddings (resemblyzer's GE2E encoder, shipped with the package): who is speaking, as a unit vector.

Used by curation (a voice match is required for an identity edge) and by the voice-cloning stage (speaker
similarity of a clone to its reference; several speakers in one reference).
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def _voice_encoder():
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def voice_embedding(audio16k: np.ndarray) -> np.ndarray:
    """L2-normalised 256-D resemblyzer (GE2E) speaker embedding of 16 kHz speech; empty without (enough) audio.

    Why curation uses a voice too: procedurally related faces can look alike to a 128-D face descriptor, while one
    person keeps one voice across scenes; requiring both to match keeps look-alikes apart in the identity graph.
    """
    if audio16k.size < 16000 // 2 or not np.any(audio16k):
        return np.zeros(0, np.float32)
    from resemblyzer import preprocess_wav

    wav = preprocess_wav(audio16k.astype(np.float32), source_sr=16000)
    if wav.size < 16000 // 2:
        return np.zeros(0, np.float32)
    e = _voice_encoder().embed_utterance(wav)
    return (e / max(np.linalg.norm(e), 1e-8)).astype(np.float32)
