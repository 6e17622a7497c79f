"""The motion planner: reference video → measured motion → calibrated motion → a head-motion plan for new video.

Seed: the motion representation stream ("generated video moves like the person"). Three steps, one owner:
- `measure`: the reference's per-frame motion vectors from MediaPipe's face mesh (models/motion.py extract_motion);
- `calibrate`: measured units → the corpus units the motion stream was trained on (a fit saved with the pipeline);
- `latent_shift`: a face track (x, y in latent px) → a new track with the reference's motion spectrum
  (models/motion_plan.motion_plan) → the head's displacement per generated latent frame, which moves the condition
  prior's mean (inference/conditions.prior_mean).
The face track comes from the measured eye midpoint at inference (`track_from_measured`: it follows turns; the
calibrated pose channels do not, measured yaw vs ground truth r = -0.15) and from ground-truth motion in the stage
proofs (`track_from_motion`, the same displacement training teacher-forces).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.latent_time import pool_to_latent_rate
from ..models.motion import apply_motion_calibration, eye_track
from ..models.motion_plan import PLAN_CUTOFF_HZ, head_shift, motion_plan


@dataclass
class MotionPlanner:
    calibration: dict | None = None
    fps: float = 25.0
    cutoff_hz: float | None = PLAN_CUTOFF_HZ

    @staticmethod
    def measure(frames: np.ndarray) -> np.ndarray | None:
        """(T, 16) measured motion of (T, H, W, 3) uint8 frames; None when no face mesh can be measured."""
        try:
            from ..models.motion import extract_motion

            return extract_motion(frames)
        except (ValueError, ImportError, RuntimeError):
            return None

    def calibrate(self, measured: np.ndarray) -> np.ndarray:
        return apply_motion_calibration(np.asarray(measured, np.float32), self.calibration)

    @staticmethod
    def track_from_measured(measured: np.ndarray, frame_side: int, latent_side: int) -> np.ndarray:
        """(T, 2) eye-midpoint track in latent px of the square crop (`frame_side` = the crop's side in pixels)."""
        return eye_track(np.asarray(measured, np.float32)) * (latent_side / frame_side)

    @staticmethod
    def track_from_motion(motion: np.ndarray | torch.Tensor, latent_side: int) -> np.ndarray:
        """(T, 16) corpus-unit motion → (T, 2) the face's displacement from its first frame in latent px."""
        m = torch.as_tensor(np.asarray(motion, np.float32))[None]
        return head_shift(m, m[:, 0], latent_side)[0].numpy()

    def latent_shift(self, track: np.ndarray, n_video: int, td: int, n_latent: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """(1, n_latent, 2) displacement of a planned track from its first frame, per latent frame."""
        plan = motion_plan(track, n_video, generator, fps=self.fps, cutoff_hz=self.cutoff_hz)
        plan_latent = pool_to_latent_rate(torch.as_tensor(plan)[None], td)[:, :n_latent]
        return plan_latent - torch.as_tensor(plan[:1])[:, None]
