"""3-D rotary position embedding (time, height, width) for the Avatar V DiT.

Implements the seed's "RoPE in 3-D" with one twist from ARCHITECTURE.md: reference tokens live in their own time
range (negative time indices, one range per reference segment), so attention can tell "frames of the reference clip"
from "frames of the clip being generated" while spatial positions stay shared (same face region ↔ same rotation).
Imports only torch (the GPU benchmark uses it on a machine without diffusers).
"""

from __future__ import annotations

import torch


def split_head_dim(head_dim: int) -> tuple[int, int, int]:
    """Rotary dims for (time, height, width); each even. Time gets the remainder (as in Wan2.1)."""
    if head_dim % 2:
        raise ValueError(f"head_dim {head_dim} must be even for RoPE")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def _inv_freq(dim: int, theta: float) -> torch.Tensor:
    return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def token_positions(n_frames: int, height: int, width: int, *, time_offset: float = 0.0, motion_token: bool = False) -> torch.Tensor:
    """(N, 3) float positions of a frame-major token grid: per frame H·W video tokens, then one motion token.

    The motion token sits at spatial position (-1, -1): outside the image grid, so it never shares a rotation with
    a face patch; its type embedding (in the DiT) tells it apart as well.
    """
    t = torch.arange(n_frames, dtype=torch.float64) + time_offset
    hh, ww = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    grid = torch.stack([hh.flatten(), ww.flatten()], dim=-1)  # (HW, 2)
    if motion_token:
        grid = torch.cat([grid, torch.full((1, 2), -1.0, dtype=torch.float64)])
    per_frame = grid.shape[0]
    pos = torch.empty(n_frames, per_frame, 3, dtype=torch.float64)
    pos[..., 0] = t[:, None]
    pos[..., 1:] = grid[None]
    return pos.reshape(-1, 3)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (N, head_dim/2) in float32 for `positions` (N, 3) = (time, height, width)."""
    dims = split_head_dim(head_dim)
    angles = [positions[:, i : i + 1].double() * _inv_freq(d, theta)[None].to(positions.device) for i, d in enumerate(dims)]
    ang = torch.cat(angles, dim=-1)
    return ang.cos().float(), ang.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x (B, H, N, d) by the angles in cos/sin (N, d/2)."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos.to(x.device), sin.to(x.device)
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2)
    return out.to(x.dtype)
