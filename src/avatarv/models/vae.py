"""AvatarVideoVAE: the causal 3-D video autoencoder the Avatar V DiT works in (seed: "video VAE latent space").

Layout (Wan/LTX-style, scaled down so it trains from scratch on 2 CPU cores at 64 px):
- input (B, 3, T, H, W) in [-1, 1], T = 1 + 4k; the first frame is encoded alone, then every 4 frames become one
  latent frame, so an image is a 1-frame video and a reference photo shares the video latent space;
- a 2x2 pixel-unshuffle "patchify" first (cheap full-resolution work), then stages that each halve space and/or
  time; convolutions are factorised into a per-frame 2-D 3x3 conv and a causal 1-D temporal conv (left padding
  with the first frame), and normalisation is per frame, so latent frame j sees only video frames <= 4j: encoding
  a prefix gives a prefix of the latents (tested), which chunked long-video inference relies on;
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

PATCH = 2  # pixel-unshuffle factor applied before the first conv


def _frames_first(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(B, C, T, H, W) -> (B*T, C, H, W) so 2-D layers run per frame."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), b


def _frames_back(y: torch.Tensor, b: int) -> torch.Tensor:
    bt, c, h, w = y.shape
    return y.reshape(b, bt // b, c, h, w).permute(0, 2, 1, 3, 4)


class FrameConv(nn.Module):
    """A 2-D conv applied to each frame independently."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, b = _frames_first(x)
        return _frames_back(self.conv(y), b)


class FrameNorm(nn.Module):
    """GroupNorm over (C, H, W) of each frame: never mixes time, keeping the model causal."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(min(8, channels), channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, b = _frames_first(x)
        return _frames_back(self.norm(y), b)


class CausalTimeConv(nn.Module):
    """1-D temporal conv per pixel, padded on the left with copies of the first frame (no look-ahead)."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = x[:, :, :1].expand(-1, -1, self.kernel - 1, -1, -1)
        return self.conv(torch.cat([pad, x], dim=2))


class ResBlock(nn.Module):
    """norm -> SiLU -> per-frame 3x3 -> causal temporal conv -> norm -> SiLU -> per-frame 3x3, plus skip."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = FrameNorm(cin), FrameConv(cin, cout)
        self.time = CausalTimeConv(cout)
        self.norm2, self.conv2 = FrameNorm(cout), FrameConv(cout, cout)
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
        b, c, t, h, w = x.shape
        first = torch.cat([x[:, :, :1], x[:, :, :1]], dim=1)
        rest = x[:, :, 1:].reshape(b, c, (t - 1) // 2, 2, h, w).permute(0, 3, 1, 2, 4, 5).reshape(b, 2 * c, -1, h, w)
        return self.proj(torch.cat([first, rest], dim=2))


class TimeUp(nn.Module):
    """Inverse of TimeDown: latent frame 0 -> one frame, every later frame -> two frames."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = FrameConv(channels, 2 * channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        b, c2, t, h, w = y.shape
        c = c2 // 2
        first = y[:, :c, :1]
        rest = y[:, :, 1:].reshape(b, 2, c, t - 1, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * (t - 1), h, w)
        return torch.cat([first, rest], dim=2)


class SpaceDown(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = FrameConv(cin, cout, kernel=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SpaceUp(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = FrameConv(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        x = F.interpolate(x, size=(t, 2 * h, 2 * w), mode="nearest")
        return self.conv(x)


def _stage_plan(spatial_downsample: int, temporal_downsample: int) -> list[tuple[bool, bool]]:
    """Per stage: (halve space?, halve time?). Time is halved in the earliest stages (cheapest on CPU)."""
    ns = int(math.log2(spatial_downsample // PATCH))
    nt = int(math.log2(temporal_downsample))
    if 2**ns * PATCH != spatial_downsample or 2**nt != temporal_downsample or ns < 0:
        raise ValueError(f"spatial_downsample {spatial_downsample} / temporal_downsample {temporal_downsample} "
                         f"must be powers of two (spatial >= {PATCH})")
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
        channel_mults: tuple[int, ...] | list[int] | None = None,
        scaling_factor: float = 1.0,
    ):
        super().__init__()
        plan = _stage_plan(spatial_downsample, temporal_downsample)
        mults = list(channel_mults) if channel_mults else [min(2**i, 4) for i in range(len(plan) + 1)]
        if len(mults) != len(plan) + 1:
            raise ValueError(f"channel_mults needs {len(plan) + 1} entries, got {mults}")
        chans = [base_channels * m for m in mults]
        cin = 3 * PATCH * PATCH

        self.enc_in = FrameConv(cin, chans[0])
        self.enc_blocks = nn.ModuleList()
        for i, (space, time) in enumerate(plan):
            stage = nn.ModuleList([ResBlock(chans[i], chans[i])])
            stage.append(SpaceDown(chans[i], chans[i + 1]) if space else FrameConv(chans[i], chans[i + 1], kernel=1))
            stage.append(TimeDown(chans[i + 1]) if time else nn.Identity())
            self.enc_blocks.append(stage)
        self.enc_mid = ResBlock(chans[-1], chans[-1])
        self.enc_norm = FrameNorm(chans[-1])
        self.enc_out = FrameConv(chans[-1], 2 * latent_channels, kernel=1)

        self.dec_in = FrameConv(latent_channels, chans[-1])
        self.dec_mid = ResBlock(chans[-1], chans[-1])
        self.dec_blocks = nn.ModuleList()
        for i, (space, time) in reversed(list(enumerate(plan))):
            stage = nn.ModuleList([TimeUp(chans[i + 1]) if time else nn.Identity()])
            stage.append(SpaceUp(chans[i + 1], chans[i]) if space else FrameConv(chans[i + 1], chans[i], kernel=1))
            stage.append(ResBlock(chans[i], chans[i]))
            self.dec_blocks.append(stage)
        self.dec_norm = FrameNorm(chans[0])
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
        return x[:, :, : self.video_frames(self.latent_frames(x.shape[2]))]  # drop an incomplete trailing group

    # ------------------------------------------------------------------ encode / decode
    def encode_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscaled posterior mean and log-variance, each (B, C, T', H/s, W/s)."""
        x = self._check_video(x)
        b, _, t, h, w = x.shape
        y, _ = _frames_first(x)
        h = self.enc_in(_frames_back(F.pixel_unshuffle(y, PATCH), b))
        for res, space, time in self.enc_blocks:
            h = time(space(res(h)))
        h = self.enc_out(F.silu(self.enc_norm(self.enc_mid(h))))
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
        b = z.shape[0]
        h = self.dec_mid(self.dec_in(z))
        for time, space, res in self.dec_blocks:
            h = res(space(time(h)))
        y, _ = _frames_first(self.dec_out(F.silu(self.dec_norm(h))))
        return _frames_back(F.pixel_shuffle(y, PATCH), b)

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
