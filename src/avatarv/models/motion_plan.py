"""The motion stream moving the video: a person-specific head-motion plan and the condition prior it shifts.

Measured (reports/motion_shift.md): the tiny SFT generator ignored its motion tokens (offsetting them by 3 std changed the video by
0.15 grey levels where another seed changes it by 8.5), so the motion stream could not make the video move like the
person. Two pieces couple them explicitly:

- `motion_plan`: new head motion with the reference's own motion spectrum — each channel of the reference's motion
  history keeps its power spectrum, phases are drawn at random (a phase-randomised surrogate), so sway spread and
  frequency are the person's while the trajectory is new; it starts at the reference's first pose.
- `shifted_condition`: the condition prior's mean (models/dit.py prior_velocity) per generated frame = the start
  frame translated by the head's displacement since that frame (`head_shift`: the dx, dy shift plus the face's
  displacement by yaw and pitch), so the video's base answer moves with the motion; the network learns the residual.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .motion import CHANNELS, POSE_SCALE, SHIFT_SCALE

YAW, PITCH, DX, DY = (CHANNELS.index(c) for c in ("yaw", "pitch", "dx", "dy"))
SHIFT_UNIT_PX = 128.0  # motion dx/dy are head shifts in 128-px units of the frame side (data/render.py)
# Face-centre displacement per unit sine of yaw / pitch, in 128-px units: least squares over 40 corpus clips' landmarks
# (centre = mean of the 68 points; x = 1.04·dx + 26.1·sin(yaw), R² 0.89, dx alone 0.74; y = 1.02·dy + 30.2·sin(pitch),
# R² 0.83, dy alone 0.62). The nose tip moves more (46.9 / 50.7); a rigid translation moves the face as a whole.
YAW_SHIFT, PITCH_SHIFT = 26.1, 30.2
# Above 3 Hz the motion measured on video (MediaPipe, calibrated) is mostly tracker noise: on the 4 held-out
# identities' clips its head-shift speed was 2.95 / 4.47 / 4.07 / 3.69 px/s against the ground truth's 2.12 / 2.99 /
# 4.11 / 1.61; low-passed at 3 Hz 1.95 / 3.28 / 3.17 / 1.74, with the spread unchanged (±2 %).
PLAN_CUTOFF_HZ = 3.0


def head_shift(motion: torch.Tensor, start: torch.Tensor, latent_size: int) -> torch.Tensor:
    """(B, T, 16) raw motion and (B, 16) start-frame motion → (B, T, 2) the face's displacement (x, y) since the
    start frame in latent pixels: head shift plus the face centre's move by yaw and pitch."""
    def place(m: torch.Tensor) -> torch.Tensor:
        turn = torch.sin(torch.deg2rad(m[..., [YAW, PITCH]] * POSE_SCALE)) * m.new_tensor([YAW_SHIFT, PITCH_SHIFT])
        return m[..., [DX, DY]] * SHIFT_SCALE + turn

    return (place(motion) - place(start)[:, None]) / SHIFT_UNIT_PX * latent_size


def shifted_condition(frame: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) frame, (B, T, 2) shifts in pixels → (B, C, T, H, W): frame t translated by shift t (bilinear,
    border values repeated), so content at (x, y) moves to (x + sx, y + sy)."""
    B, C, H, W = frame.shape
    T = shift.shape[1]
    ys, xs = torch.meshgrid(torch.arange(H, device=frame.device, dtype=frame.dtype),
                            torch.arange(W, device=frame.device, dtype=frame.dtype), indexing="ij")
    sx = shift[..., 0].to(frame.dtype).reshape(B, T, 1, 1)
    sy = shift[..., 1].to(frame.dtype).reshape(B, T, 1, 1)
    gx = (xs - sx + 0.5) / W * 2 - 1  # sample the source pixel the content came from (align_corners=False)
    gy = (ys - sy + 0.5) / H * 2 - 1
    grid = torch.stack([gx, gy], -1).reshape(B * T, H, W, 2)
    src = frame[:, None].expand(B, T, C, H, W).reshape(B * T, C, H, W)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4)


def motion_plan(history: np.ndarray, n_frames: int, generator: torch.Generator | None = None, *, fps: float = 25.0,
                cutoff_hz: float | None = PLAN_CUTOFF_HZ) -> np.ndarray:
    """(L, 16) reference motion → (n_frames, 16) new motion with each channel's power spectrum up to `cutoff_hz`,
    starting at history[0] (the pose of the frame the video starts from); periodic with period L beyond L frames.
    A one-frame history (a still reference image) has no motion to draw from: the pose is held."""
    h = np.asarray(history, np.float64)
    if h.ndim != 2 or len(h) == 0:
        raise ValueError(f"motion_plan: need a (L, D) motion history, got {h.shape}")
    L = len(h)
    if L == 1:
        return np.repeat(h, n_frames, 0).astype(np.float32)
    spec = np.fft.rfft(h - h.mean(0), axis=0)
    if cutoff_hz is not None:
        spec[np.fft.rfftfreq(L, 1.0 / fps) > cutoff_hz] = 0
    phase = torch.rand((spec.shape[0], h.shape[1]), generator=generator, dtype=torch.float64).numpy() * 2 * math.pi
    phase[0] = 0.0
    if L % 2 == 0:
        phase[-1] = 0.0  # the Nyquist bin is real
    walk = np.fft.irfft(np.abs(spec) * np.exp(1j * phase), n=L, axis=0)
    idx = np.arange(n_frames) % L
    return (h[0] + walk[idx] - walk[0]).astype(np.float32)
