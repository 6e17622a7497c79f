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


# ------------------------------------------------------------------------------------------------ SDE sampling
# The flow ODE dx = v dt has an SDE with the same marginals (Flow-GRPO, Liu et al. 2025):
#   dx = [v + σ_t²/(2t)·(x + (1 − t)·v)] dt + σ_t dw,  σ_t = η·sqrt(t / (1 − t)),
# integrated from t = 1 to 0 (dt < 0). One Euler–Maruyama step is a Gaussian transition, so a sampled trajectory has
# a log-likelihood under the policy that produced it: what policy-gradient RL on a flow model needs.
def sde_std(t: float, t_next: float, noise_level: float, t_cap: float) -> tuple[float, float]:
    """(σ_t, transition std σ_t·sqrt(t − t_next)); at t = 1 the (1 − t) is replaced by (1 − t_cap), the next grid
    time, as σ_t diverges there."""
    denom = 1.0 - (t_cap if t >= 1.0 else t)
    sigma = noise_level * (t / max(denom, 1e-6)) ** 0.5
    return sigma, sigma * max(t - t_next, 0.0) ** 0.5


def sde_mean(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float, sigma: float) -> torch.Tensor:
    """The mean of one SDE step from time t to t_next (equals the Euler step x + (t_next − t)·v when σ = 0)."""
    dt = t_next - t
    return x * (1 + sigma**2 / (2 * t) * dt) + v * (1 + sigma**2 * (1 - t) / (2 * t)) * dt


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Per-sample log N(x; mean, std²) averaged over the non-batch elements (B,): a per-element mean keeps policy
    ratios of high-dimensional samples in a usable range, as Flow-GRPO does."""
    import math

    lp = -((x.float() - mean.float()) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).mean(1)


def gaussian_kl(mean_p: torch.Tensor, mean_q: torch.Tensor, std: float) -> torch.Tensor:
    """Per-sample KL(N(mean_p, std²) ‖ N(mean_q, std²)) averaged over the non-batch elements (B,): the KL between a
    policy's and the reference model's transitions from the same state (zero when their means agree)."""
    return ((mean_p.float() - mean_q.float()) ** 2).flatten(1).mean(1) / (2 * std**2)
