"""Rectified flow (seed: "rectified flow, velocity prediction"): timestep sampling, noising, target, loss.

Convention (COMMON.md, = diffusers FlowMatchEulerDiscreteScheduler): x_t = (1 - t)·x0 + t·noise, t ∈ [0, 1]
(t = 1 is pure noise), velocity v = noise - x0, the model predicts v, and x0_hat = x_t - t·v.
"""

from __future__ import annotations

import torch


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """The resolution/time shift of SD3/Wan: t' = s·t / (1 + (s - 1)·t); s > 1 spends more time at high noise."""
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(batch: int, generator: torch.Generator | None = None, shift: float = 1.0,
                     device: torch.device | str = "cpu", logit_normal: bool = True) -> torch.Tensor:
    """(B,) training times: logit-normal (mass in the middle, where velocity is hardest to learn), then shifted."""
    on = generator.device if generator is not None else torch.device("cpu")  # draw where the generator lives
    if logit_normal:
        t = torch.sigmoid(torch.randn(batch, generator=generator, device=on))
    else:
        t = torch.rand(batch, generator=generator, device=on)
    return shift_timesteps(t, shift).to(device)


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t)·x0 + t·noise, t of shape (B,)."""
    tb = _bcast(t, x0)
    return (1 - tb) * x0 + tb * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def predicted_x0(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0_hat = x_t - t·v (used by the identity loss and for previews)."""
    return x_t - _bcast(t, x_t) * velocity


def flow_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted velocity MSE.

    weights: broadcastable to pred, per-token emphasis (e.g. face / lip regions on the latent grid);
    mask: broadcastable bool/0-1, which elements count at all (e.g. 0 on clean bridge frames).
    The mean is over counted elements with their weights, so masking does not shrink the loss scale.
    """
    err = (pred.float() - target.float()).square()
    w = torch.ones_like(err)
    if weights is not None:
        w = w * weights.float()
    if mask is not None:
        w = w * mask.float()
    return (err * w).sum() / w.sum().clamp_min(1e-8)


def bridge_mask(latents: torch.Tensor, n_bridge: int) -> torch.Tensor:
    """(1, 1, T, 1, 1) 0/1 mask: 0 on the first n_bridge (clean, given) latent frames, 1 elsewhere."""
    T = latents.shape[2]
    m = torch.ones(1, 1, T, 1, 1, device=latents.device)
    m[:, :, :n_bridge] = 0
    return m
