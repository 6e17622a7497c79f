"""The cascade's one pass over a clip's faces: detection + tracking on sampled frames, then 68-point landmarks,
mouth opening and head-yaw on every frame the main face track spans.

Shared by the face-count, face-size, head-pose, quality, sync and identity steps, so each frame is analysed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import CurateConfig
from ..faces import Box, Track, head_yaw_proxy, landmarks_68, mouth_opening, track_faces


@dataclass
class FacePass:
    sampled: list[int]  # frame indices where the detector ran
    counts: np.ndarray  # faces found on each sampled frame
    tracks: list[Track]  # longest first
    landmarks: np.ndarray  # (T, 68, 2), NaN outside the main track's span
    mouth: np.ndarray  # (T,) mouth opening, NaN outside the span
    yaw: np.ndarray  # (T,) yaw proxy, NaN outside the span

    @property
    def main(self) -> Track | None:
        return self.tracks[0] if self.tracks else None

    def span(self) -> np.ndarray:
        """Frame indices covered by the main track's landmarks."""
        return np.flatnonzero(~np.isnan(self.mouth))

    def box(self, t: int) -> Box:
        return self.main.box_at(t)


def analyse_faces(frames: np.ndarray, cfg: CurateConfig) -> FacePass:
    t_total = len(frames)
    tracks, per_frame = track_faces(frames, stride=cfg.face_stride, backend=cfg.face_detector,
                                    min_confidence=cfg.face_confidence)
    counts = np.array([len(b) for _, b in per_frame], dtype=np.int64)
    lms = np.full((t_total, 68, 2), np.nan, np.float32)
    mouth = np.full(t_total, np.nan, np.float32)
    yaw = np.full(t_total, np.nan, np.float32)
    if tracks:
        main = tracks[0]
        for t in range(main.frames[0], min(t_total, main.frames[-1] + 1)):
            lm = landmarks_68(frames[t], main.box_at(t))
            lms[t], mouth[t], yaw[t] = lm, mouth_opening(lm), head_yaw_proxy(lm)
    return FacePass([t for t, _ in per_frame], counts, tracks, lms, mouth, yaw)
