"""Training-time samples through the one sampler, `AvatarVPipeline.sample_window`: batches of held-out windows for
the stages' grids, probes and proofs, from latents already in the window cache (the chunked, audio-length-following
generation for users is the pipeline's `__call__`). The reference is encoded once and its cached K/V reused for every
step and CFG branch, as at inference."""

from __future__ import annotations

import torch

from ..diffusion.guidance import Guidance
from ..diffusion.scheduler import make_scheduler
from ..inference.conditions import ConditionSpec, WindowConditions
from ..inference.pipeline import AvatarVPipeline
from .generator import unwrap


def sampler(model, vae, conditions: ConditionSpec, flow_shift: float = 1.0, steps: int = 12) -> AvatarVPipeline:
    """The pipeline around a generator being trained (its modules, not copies)."""
    g = unwrap(model)
    return AvatarVPipeline(vae=vae, transformer=g.transformer, audio_encoder=g.audio_encoder,
                           scheduler=make_scheduler(flow_shift), steps=steps, conditions=conditions.to_dict())


@torch.no_grad()
def sample_latents(pipe: AvatarVPipeline, shape: tuple[int, ...], window: WindowConditions, *,
                   generator: torch.Generator, steps: int, mel: torch.Tensor | None = None,
                   bridge: torch.Tensor | None = None, guidance: Guidance = Guidance()
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise of `shape` (B, C, T, H, W) → clean latents and motion tokens of one window per sample. `bridge`
    (B, C, k, H, W) gives the first k latent frames clean (stage 2: the face image)."""
    tr = pipe.transformer
    dev = tr.device
    B, _, T, _, _ = shape
    x = torch.randn(shape, generator=generator, device=dev)
    m = torch.randn(B, T, tr.config.motion_dim, generator=generator, device=dev)
    n_bridge = 0 if bridge is None else bridge.shape[2]
    if n_bridge:
        x[:, :, :n_bridge] = bridge
    audio = pipe.audio_encoder(mel) if mel is not None else None
    cache = None
    if window.ref_latents is not None:
        cache = tr.encode_reference(window.ref_latents, window.ref_motion, window.ref_context)
    return pipe.sample_window(x, m, window, audio=audio, n_bridge=n_bridge, reference_cache=cache, steps=steps,
                              guidance=guidance)
