"""Mapping between video frames and the causal VAE's latent frames (first frame alone, then `td` frames each).

Latent frame 0 holds video frame 0; latent frame j >= 1 holds video frames td·j-td+1 .. td·j. The DiT's motion
stream runs at the latent frame rate (one motion token per latent frame, the mean of its video frames' motion
vectors), and its audio cross-attention maps each latent frame to the audio of its own video frames ± a margin.
"""

from __future__ import annotations

import math

import torch


def latent_frames_for(n_video: int, td: int) -> int:
    """Latent frames needed to cover n_video video frames (decoding gives 1 + td·(n-1) >= n_video frames)."""
    if n_video < 1:
        raise ValueError(f"need at least one video frame, got {n_video}")
    return 1 + math.ceil((n_video - 1) / td)


def video_frames_for(n_latent: int, td: int) -> int:
    """Video frames the VAE decodes from n_latent latent frames."""
    return 1 + td * (n_latent - 1)


def video_span(j: int, td: int) -> tuple[int, int]:
    """Inclusive (first, last) video frame of latent frame j."""
    return (0, 0) if j == 0 else (td * j - td + 1, td * j)


def pool_to_latent_rate(x: torch.Tensor, td: int) -> torch.Tensor:
    """(B, T_video, D) per-video-frame values → (B, T_latent, D) means over each latent frame's video frames."""
    first, rest = x[:, :1], x[:, 1:]
    n_rest = rest.shape[1]
    if n_rest == 0:
        return first
    groups = math.ceil(n_rest / td)
    pad = groups * td - n_rest
    weights = torch.ones(x.shape[0], n_rest, 1, dtype=x.dtype, device=x.device)
    if pad:  # a partial last group: average only the frames that exist
        rest = torch.cat([rest, rest.new_zeros(x.shape[0], pad, x.shape[2])], dim=1)
        weights = torch.cat([weights, weights.new_zeros(x.shape[0], pad, 1)], dim=1)
    sums = rest.unflatten(1, (groups, td)).sum(2)
    counts = weights.unflatten(1, (groups, td)).sum(2)
    return torch.cat([first, sums / counts], dim=1)


def expand_to_video_rate(x: torch.Tensor, td: int, n_video: int | None = None) -> torch.Tensor:
    """(B, T_latent, D) → (B, n_video, D): each latent frame's value repeated over its video frames."""
    rest = x[:, 1:].repeat_interleave(td, dim=1)
    out = torch.cat([x[:, :1], rest], dim=1)
    return out if n_video is None else out[:, :n_video]


def as_latent_rate(x: torch.Tensor, n_latent: int, td: int) -> torch.Tensor:
    """Accept a per-frame stream at either rate: latent rate is returned as is, video rate is pooled."""
    if x.shape[1] == n_latent:
        return x
    if latent_frames_for(x.shape[1], td) == n_latent:
        return pool_to_latent_rate(x, td)
    raise ValueError(f"stream of {x.shape[1]} frames matches neither {n_latent} latent frames nor their video frames")


def audio_windows(n_latent: int, td: int, margin: int, lead: int = 0) -> torch.Tensor:
    """(n_latent, td + 2·margin) audio-row indices for each latent frame's window (may be out of range).

    Row r of the audio holds video frame r - lead; `lead` > 0 lets a chunk that starts mid-video see the audio
    just before its first (bridge) latent frame, exactly as a training clip sliced from a longer clip would.
    """
    j = torch.arange(n_latent)[:, None]
    return td * j - (td - 1) - margin + torch.arange(td + 2 * margin)[None] + lead
