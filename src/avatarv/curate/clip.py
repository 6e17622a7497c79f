"""One clip under curation: its probe facts plus lazily decoded media and face analysis shared by the filters.

Why lazy: with `short_circuit` a clip rejected early is never decoded or face-tracked; without it every filter
still reuses one decode and one face pass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import CurateConfig
from ..media import normalize_video, resample
from .faces_pass import FacePass, analyse_faces

VAD_RATE = 16000


@dataclass
class ClipContext:
    clip_id: str
    path: Path  # absolute
    probe: dict
    cfg: CurateConfig
    cache: dict = field(default_factory=dict)

    @functools.cached_property
    def video(self):
        """The clip at the working rate (media/normalize.py), whatever rate or rotation the file has."""
        return normalize_video(self.path, sample_rate=VAD_RATE)

    @property
    def frames(self) -> np.ndarray:
        return self.video.frames

    @property
    def fps(self) -> float:
        return float(self.video.fps)

    @functools.cached_property
    def audio16k(self) -> np.ndarray:
        """Mono float32 audio at 16 kHz (silero-vad's rate); empty when the clip has none."""
        v = self.video
        if v.audio.size == 0:
            return np.zeros(0, np.float32)
        return resample(v.audio, v.sample_rate, VAD_RATE)

    @functools.cached_property
    def faces(self) -> FacePass:
        return analyse_faces(self.frames, self.cfg)
