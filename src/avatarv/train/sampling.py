"""A small Euler sampler over latents for training-time samples and the stage evaluations (the chunked,
audio-length-following generation for users is inference/pipeline.py). The reference is encoded once and its
cached K/V reused for every step and both CFG branches, as at inference."""

from __future__ import annotations

import torch

from .generator import AvatarGenerator


def flow_times(steps: int, shift: float = 1.0) -> torch.Tensor:
    t = torch.linspace(1.0, 0.0, steps + 1)
    return shift * t / (1 + (shift - 1) * t)


@torch.no_grad()
def sample_latents(
    model: AvatarGenerator,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator,
    steps: int = 12,
    shift: float = 1.0,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    mel: torch.Tensor | None = None,
    ref_latents: torch.Tensor | None = None,
    ref_motion: torch.Tensor | None = None,
    ref_motion_context: torch.Tensor | None = None,
    motion: bool = False,
    motion_dim: int = 16,
    bridge: torch.Tensor | None = None,
    cond_frame: torch.Tensor | None = None,
    prior_mean: torch.Tensor | None = None,
    guidance_audio: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Integrate dx/dt = v from t = 1 (noise) to 0. `bridge` (B, C, k, H, W) fixes the first k latent frames
    clean (a2v: the face image); `cond_frame` (B, C, H, W) is the frame condition (models/dit.py), `prior_mean`
    (B, C, T, H, W) its prior mean moved by a motion plan (models/motion_plan.py). Returns
    (latents, motion stream at latent rate or None)."""
    tr = model.transformer
    dev = next(tr.parameters()).device
    B, C, T, H, W = shape
    x = torch.randn(shape, generator=generator, device=dev)
    m = torch.randn(B, T, motion_dim, generator=generator, device=dev) if motion else None
    n_bridge = 0 if bridge is None else bridge.shape[2]
    audio = model.audio_encoder(mel) if mel is not None else None
    reference = tr.encode_reference(ref_latents, ref_motion, ref_motion_context) if ref_latents is not None else None
    times = flow_times(steps, shift).to(dev)
    no_audio = torch.ones(B, dtype=torch.bool, device=dev)
    for i in range(steps):
        t, t_next = times[i], times[i + 1]
        if n_bridge:
            x[:, :, :n_bridge] = bridge
        kw = dict(motion=m, text=text, text_mask=text_mask, reference=reference, n_bridge=n_bridge, cond_frame=cond_frame,
                  prior_mean=prior_mean)
        out = tr(x, t.expand(B), audio=audio, **kw)
        v, vm = out.sample, out.motion
        if audio is not None and guidance_audio != 1.0:
            un = tr(x, t.expand(B), audio=audio, drop_audio=no_audio, **kw)
            v = un.sample + guidance_audio * (v - un.sample)
            if vm is not None:
                vm = un.motion + guidance_audio * (vm - un.motion)
        x = x + (t_next - t) * v
        if m is not None and vm is not None:
            m = m + (t_next - t) * vm
    if n_bridge:
        x[:, :, :n_bridge] = bridge
    return x, m


def latents_to_frames(vae, latents: torch.Tensor) -> torch.Tensor:
    """(B, C, T', h, w) → (B, T, H, W, 3) uint8."""
    with torch.no_grad():
        video = vae.decode(latents.float())
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu()
