"""AvatarVideoVAE: the causal 3-D video autoencoder the Avatar V DiT works in (seed: "video VAE latent space").

Layout (Wan/LTX-style, scaled down so it trains from scratch on 2 CPU cores at 64 px):
- input (B, 3, T, H, W) in [-1, 1], T = 1 + 4k; the first frame is encoded alone, then every 4 frames become one
  latent frame, so an image is a 1-frame video and a reference photo shares the video latent space;
- a `patch_size` pixel-unshuffle "patchify" first (LTX-Video style: cheap full-resolution work), then stages
  that each halve space and/or time; convolutions are factorised into a per-frame 2-D 3x3 conv and a causal
  temporal conv (the first frame repeated before the start), and normalisation is per frame, so latent frame j
  sees only video frames <= 4j: encoding a prefix gives a prefix of the latents (tested), which chunked
  long-video inference relies on;
- time is halved causally by folding frame pairs (1,2), (3,4), ... into channels; frame 0 is folded with itself.
`encode` returns latents already multiplied by `scaling_factor` (set after training so latents have ~unit std);
`decode` divides by it and returns frames in [-1, 1].
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

# Internally every activation is frames-first, (B, T, C, H, W): per-frame 2-D layers see (B*T, C, H, W) with no
# copy, and folding frame pairs into channels is a plain reshape. Public tensors stay (B, C, T, H, W).


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, *x.shape[2:])


class FrameConv(nn.Module):
    """A 2-D conv applied to each frame independently."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(_flat(x))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


class FrameNorm(nn.Module):
    """Per-frame normalisation (never mixes time, keeping the model causal): GroupNorm over (C, H, W) of each
    frame, or "rms": Wan-style RMS norm over the channels of each pixel, which keeps each frame's colour level."""

    def __init__(self, channels: int, kind: str = "group"):
        super().__init__()
        self.kind = kind
        if kind == "group":
            self.norm = nn.GroupNorm(min(8, channels), channels, eps=1e-6)
        elif kind == "rms":
            self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        else:
            raise ValueError(f"AvatarVideoVAE: unknown norm {kind!r} (group | rms)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rms":
            return x * torch.rsqrt(x.pow(2).mean(dim=2, keepdim=True) + 1e-6) * self.weight
        return self.norm(_flat(x)).reshape(x.shape)


class CausalTimeConv(nn.Module):
    """Temporal conv over the current and previous `kernel-1` frames (the first frame repeated before the start):
    the shifted copies are stacked on channels and mixed by a 1x1 conv, i.e. a causal (k,1,1) 3-D conv."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.kernel = kernel
        self.mix = nn.Conv2d(kernel * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        padded = torch.cat([x[:, :1].expand(-1, self.kernel - 1, -1, -1, -1), x], dim=1)
        stacked = torch.cat([padded[:, i : i + t] for i in range(self.kernel)], dim=2)
        return self.mix(_flat(stacked)).reshape(x.shape)


class ResBlock(nn.Module):
    """norm -> SiLU -> per-frame 3x3 -> (+ causal temporal conv) -> norm -> SiLU -> per-frame 3x3, plus skip."""

    def __init__(self, cin: int, cout: int, norm: str = "group"):
        super().__init__()
        self.norm1, self.conv1 = FrameNorm(cin, norm), FrameConv(cin, cout)
        self.time = CausalTimeConv(cout)
        self.norm2, self.conv2 = FrameNorm(cout, norm), FrameConv(cout, cout)
        self.skip = FrameConv(cin, cout, kernel=1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(h)
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class TimeDown(nn.Module):
    """Causal 2x time reduction: frame 0 stays alone, frames (1,2), (3,4), ... are folded into channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = FrameConv(2 * channels, channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        first = x[:, :1].repeat(1, 1, 2, 1, 1)
        rest = x[:, 1:].reshape(b, (t - 1) // 2, 2 * c, h, w)
        return self.proj(torch.cat([first, rest], dim=1))


class TimeUp(nn.Module):
    """Inverse of TimeDown: latent frame 0 -> one frame, every later frame -> two frames."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = FrameConv(channels, 2 * channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        b, t, c2, h, w = y.shape
        rest = y[:, 1:].reshape(b, 2 * (t - 1), c2 // 2, h, w)
        return torch.cat([y[:, :1, : c2 // 2], rest], dim=1)


class SpaceUp(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.interpolate(_flat(x), scale_factor=2.0, mode="nearest"))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


def _stage_plan(spatial_downsample: int, temporal_downsample: int, patch: int) -> list[tuple[bool, bool]]:
    """Per stage: (halve space?, halve time?). Time is halved in the earliest stages (cheapest on CPU)."""
    ns = int(round(math.log2(max(spatial_downsample // patch, 1))))
    nt = int(round(math.log2(temporal_downsample)))
    if 2**ns * patch != spatial_downsample or 2**nt != temporal_downsample:
        raise ValueError(f"spatial_downsample {spatial_downsample} must be patch_size {patch} x a power of two and "
                         f"temporal_downsample {temporal_downsample} a power of two")
    return [(i < ns, i < nt) for i in range(max(ns, nt))]


class AvatarVideoVAE(ModelMixin, ConfigMixin):
    """Causal video VAE; see the module docstring. Shapes: (B,3,1+4k,H,W) <-> (B,C,1+k,H/s,W/s)."""

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 8,
        base_channels: int = 32,
        spatial_downsample: int = 4,
        temporal_downsample: int = 4,
        patch_size: int = 2,
        channel_mults: tuple[int, ...] | list[int] | None = None,
        norm: str = "group",
        scaling_factor: float = 1.0,
    ):
        super().__init__()
        plan = _stage_plan(spatial_downsample, temporal_downsample, patch_size)
        mults = list(channel_mults) if channel_mults else [min(2**i, 2) for i in range(len(plan) + 1)]
        if len(mults) != len(plan) + 1:
            raise ValueError(f"channel_mults needs {len(plan) + 1} entries, got {mults}")
        chans = [base_channels * m for m in mults]
        cin = 3 * patch_size * patch_size

        self.enc_in = FrameConv(cin, chans[0])
        self.enc_blocks = nn.ModuleList()
        for i, (space, time) in enumerate(plan):
            stage = nn.ModuleList([ResBlock(chans[i], chans[i], norm)])
            stage.append(FrameConv(chans[i], chans[i + 1], kernel=3 if space else 1, stride=2 if space else 1))
            stage.append(TimeDown(chans[i + 1]) if time else nn.Identity())
            self.enc_blocks.append(stage)
        self.enc_mid = ResBlock(chans[-1], chans[-1], norm)
        self.enc_norm = FrameNorm(chans[-1], norm)
        self.enc_out = FrameConv(chans[-1], 2 * latent_channels, kernel=1)

        self.dec_in = FrameConv(latent_channels, chans[-1])
        self.dec_mid = ResBlock(chans[-1], chans[-1], norm)
        self.dec_blocks = nn.ModuleList()
        for i, (space, time) in reversed(list(enumerate(plan))):
            stage = nn.ModuleList([TimeUp(chans[i + 1]) if time else nn.Identity()])
            stage.append(SpaceUp(chans[i + 1], chans[i]) if space else FrameConv(chans[i + 1], chans[i], kernel=1))
            stage.append(ResBlock(chans[i], chans[i], norm))
            self.dec_blocks.append(stage)
        self.dec_norm = FrameNorm(chans[0], norm)
        self.dec_out = FrameConv(chans[0], cin)

    # ------------------------------------------------------------------ shapes
    def latent_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // self.config.temporal_downsample

    def video_frames(self, latent_frames: int) -> int:
        return 1 + self.config.temporal_downsample * (latent_frames - 1)

    def _check_video(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.spatial_downsample
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"AvatarVideoVAE.encode: expected (B, 3, T, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % s or x.shape[-2] % s:
            raise ValueError(f"AvatarVideoVAE.encode: H, W must be multiples of {s}, got {tuple(x.shape[-2:])}")
        if x.shape[2] < 1:
            raise ValueError("AvatarVideoVAE.encode: the video has no frames")
        return x[:, :, : self.video_frames(self.latent_frames(x.shape[2]))]  # drop an incomplete trailing group

    # ------------------------------------------------------------------ encode / decode
    def encode_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscaled posterior mean and log-variance, each (B, C, T', H/s, W/s)."""
        x = self._check_video(x)
        p = self.config.patch_size
        b, _, t, hgt, wid = x.shape
        y = F.pixel_unshuffle(x.transpose(1, 2).reshape(b * t, 3, hgt, wid), p)
        h = self.enc_in(y.reshape(b, t, *y.shape[1:]))
        for res, space, time in self.enc_blocks:
            h = time(space(res(h)))
        h = self.enc_out(F.silu(self.enc_norm(self.enc_mid(h)))).transpose(1, 2)  # -> (B, 2C, T', h, w)
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Video (B,3,T,H,W) in [-1,1] -> scaled latents (B,C,1+(T-1)//4,H/s,W/s); mean unless `sample`."""
        mean, logvar = self.encode_moments(x)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * noise
        return z * self.config.scaling_factor

    def decode_unscaled(self, z: torch.Tensor) -> torch.Tensor:
        b, t = z.shape[0], z.shape[2]
        h = self.dec_mid(self.dec_in(z.transpose(1, 2)))
        for time, space, res in self.dec_blocks:
            h = res(space(time(h)))
        y = self.dec_out(F.silu(self.dec_norm(h)))
        t = y.shape[1]
        y = F.pixel_shuffle(_flat(y), self.config.patch_size)
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B,C,T',h,w) -> video (B,3,1+4(T'-1),h*s,w*s) in [-1, 1]."""
        if z.ndim != 5 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"AvatarVideoVAE.decode: expected (B, {self.config.latent_channels}, T, h, w), "
                             f"got {tuple(z.shape)}")
        return self.decode_unscaled(z / self.config.scaling_factor).clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None):
        """Training pass: (reconstruction in ~[-1,1] unclamped, mean, logvar) for the input video."""
        mean, logvar = self.encode_moments(x)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * noise
        return self.decode_unscaled(z), mean, logvar


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> AvatarVideoVAE:
    """Load a trained VAE folder (save_pretrained layout), eval mode, no grads."""
    path = Path(path)
    if not (path / "config.json").exists():
        from ..errors import InputError

        raise InputError(path, "not a saved AvatarVideoVAE (no config.json); run `avatarv train --stage vae`")
    vae = AvatarVideoVAE.from_pretrained(str(path)).to(device).eval()
    vae.requires_grad_(False)
    return vae
