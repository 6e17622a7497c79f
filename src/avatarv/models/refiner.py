"""The reference-aware super-resolution refiner (seed: the base model works at low resolution; a refiner upscales
its video to 1080p, seeing the same identity reference and attending only to nearby frames).

A conditional upsampler ×`factor` (tiny: 64 → 256 px; paper: 270×480 → 1080×1920). One pass, no diffusion:
 1. the low-res video is bicubic-upsampled; everything the network adds is a residual on top of it (the zero-initialised
    head makes an untrained refiner exactly bicubic);
 2. tokens = `patch`×`patch` low-res patches; each token paints a (patch·factor)² output patch, and a small 3×3
    convolution at the output size smooths the seams between patches;
 3. attention is *local in time*: the tokens of frame t see the tokens of frames t−w..t+w (`window`; 0 = every frame),
    because the base video already has consistent motion — the cost per frame is constant in the video's length;
 4. the identity reference (high-res frames of the person) enters through Sparse Reference Attention, the project's
    implementation (models/reference_attention.py `attend`): the reference tokens run through the blocks once,
    seeing only themselves (`encode_reference` → a `ReferenceCache` of per-block K/V), and every video token sees
    its temporal window plus the cached reference keys. The reference reaches the video ONLY through those keys and
    values: `reference=None` (or `reference_keep` False) is exactly the refiner without a reference.

`window_attention` (banded: one SDPA call per frame group, no mask) equals `dense_window_attention` (dense SDPA with
the band mask) up to float rounding (tests/test_models_refiner.py). `refine_video` processes long videos in chunks
with `layers·window` frames of context on each side, which is exact for local attention (a frame's receptive field
after L blocks is t ± L·w).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import InputError
from .reference_attention import attend
from .reference_cache import ReferenceCache
from .rope import apply_rope, rope_cos_sin, token_positions


# ------------------------------------------------------------------------------------------------ attention
def band_mask(n_frames: int, tokens_per_frame: int, window: int, device=None) -> torch.Tensor:
    """(N, N) bool: token i may see token j iff their frames are at most `window` apart (window 0: all frames)."""
    f = torch.arange(n_frames, device=device).repeat_interleave(tokens_per_frame)
    if window <= 0:
        return torch.ones(len(f), len(f), dtype=torch.bool, device=device)
    return (f[:, None] - f[None, :]).abs() <= window


def dense_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_frames: int, window: int,
                           prefix_k: torch.Tensor | None = None, prefix_v: torch.Tensor | None = None) -> torch.Tensor:
    """Reference implementation: dense SDPA over [video; reference] keys with the explicit band mask (the reference
    keys visible to every query)."""
    n = q.shape[2] // n_frames
    mask = band_mask(n_frames, n, window, q.device)
    if prefix_k is not None:
        if prefix_k.shape[0] != q.shape[0]:
            prefix_k = prefix_k.expand(q.shape[0], *prefix_k.shape[1:])
            prefix_v = prefix_v.expand(q.shape[0], *prefix_v.shape[1:])
        k, v = torch.cat([k, prefix_k], 2), torch.cat([v, prefix_v], 2)
        mask = torch.cat([mask, torch.ones(mask.shape[0], prefix_k.shape[2], dtype=torch.bool, device=q.device)], 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _repeat_prefix(x: torch.Tensor | None, batch: int, times: int) -> torch.Tensor | None:
    """A per-sample prefix (batch B) repeated for the B·times frame groups (b-major, as the queries are merged)."""
    if x is None or x.shape[0] == 1:
        return x
    return x.expand(batch, *x.shape[1:]).repeat_interleave(times, dim=0)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_frames: int, window: int,
                     prefix_k: torch.Tensor | None = None, prefix_v: torch.Tensor | None = None,
                     prefix_keep: torch.Tensor | None = None) -> torch.Tensor:
    """Local temporal attention for (B, H, T·n, d) frame-major tokens: frame t's queries attend to the keys of
    frames max(0, t−w)..min(T−1, t+w) plus the reference prefix (Sparse Reference Attention, `attend`). Interior
    frames share one batched SDPA call (keys gathered with `unfold`); the 2w edge frames, whose windows are
    shorter, get one call each. No mask, so flash / cuDNN kernels apply on GPU."""
    B, H, N, d = q.shape
    T = n_frames
    if window <= 0 or window >= T - 1:
        return attend(q, k, v, prefix_k, prefix_v, prefix_keep)
    n = N // T
    q5, k5, v5 = (x.view(B, H, T, n, d) for x in (q, k, v))
    out = torch.empty_like(q5)
    w, span = window, 2 * window + 1
    inner = T - 2 * w
    if inner > 0:
        qi = q5[:, :, w : T - w].permute(0, 2, 1, 3, 4).reshape(B * inner, H, n, d)

        def gather(x5):  # (B, H, T, n, d) → (B·inner, H, span·n, d): frames t−w..t+w of each interior t
            u = x5.unfold(2, span, 1)  # (B, H, inner, n, d, span)
            return u.permute(0, 2, 1, 5, 3, 4).reshape(B * inner, H, span * n, d)

        keep = None if prefix_keep is None else prefix_keep.repeat_interleave(inner)
        oi = attend(qi, gather(k5), gather(v5), _repeat_prefix(prefix_k, B, inner), _repeat_prefix(prefix_v, B, inner),
                    keep)
        out[:, :, w : T - w] = oi.view(B, inner, H, n, d).permute(0, 2, 1, 3, 4)
    for t in [*range(min(w, T)), *range(max(T - w, w), T)]:
        lo, hi = max(0, t - w), min(T, t + w + 1)
        out[:, :, t] = attend(q5[:, :, t], k5[:, :, lo:hi].reshape(B, H, -1, d), v5[:, :, lo:hi].reshape(B, H, -1, d),
                              prefix_k, prefix_v, prefix_keep)
    return out.view(B, H, N, d)


# ------------------------------------------------------------------------------------------------ the network
def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, T, H, W) → (B, T·(H/p)·(W/p), C·p·p), frame-major, rows then columns."""
    B, C, T, H, W = x.shape
    x = x.view(B, C, T, H // p, p, W // p, p).permute(0, 2, 3, 5, 1, 4, 6)
    return x.reshape(B, T * (H // p) * (W // p), C * p * p)


def unpatchify(x: torch.Tensor, T: int, h: int, w: int, p: int, C: int = 3) -> torch.Tensor:
    B = x.shape[0]
    x = x.view(B, T, h, w, C, p, p).permute(0, 4, 1, 2, 5, 3, 6)
    return x.reshape(B, C, T, h * p, w * p)


class RefinerBlock(nn.Module):
    """Pre-norm self-attention (q/k RMS-normed, 3-D RoPE) + MLP. The attention function is passed in: windowed with
    the reference prefix for the video, plain self-attention for the reference's own pass."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, eps: float = 1e-6):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.attn_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def qkv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
        q, k, v = self.to_qkv(self.norm1(x)).unflatten(-1, (3, self.heads, self.head_dim)).unbind(2)
        q = apply_rope(self.q_norm(q).transpose(1, 2), *rope)
        k = apply_rope(self.k_norm(k).transpose(1, 2), *rope)
        return q, k, v.transpose(1, 2)

    def finish(self, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_out(o.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x))

    def forward(self, x, rope, attention):
        return self.finish(x, attention(*self.qkv(x, rope)))


class RefinerModel(ModelMixin, ConfigMixin):
    """Low-res video (B, 3, T, H, W) in [−1, 1] (+ an optional ReferenceCache) → (B, 3, T, H·factor, W·factor)."""

    @register_to_config
    def __init__(self, factor: int = 4, in_size: tuple[int, int] | list[int] = (64, 64), patch: int = 4,
                 hidden: int = 64, layers: int = 2, heads: int = 4, mlp_ratio: float = 2.0, window: int = 1,
                 reference: bool = True, reference_time: float = -64.0, smooth_channels: int = 8):
        super().__init__()
        P = patch * factor
        self.embed = nn.Linear(3 * patch * patch, hidden)
        # the reference's only entry point besides the attention keys/values it produces
        self.ref_embed = nn.Linear(3 * P * P, hidden) if reference else None
        self.blocks = nn.ModuleList([RefinerBlock(hidden, heads, mlp_ratio) for _ in range(layers)])
        self.norm_out = nn.LayerNorm(hidden, eps=1e-6)
        self.head = nn.Linear(hidden, 3 * P * P)
        self.smooth = nn.Sequential(nn.Conv2d(3, smooth_channels, 3, padding=1), nn.GELU(approximate="tanh"),
                                    nn.Conv2d(smooth_channels, 3, 3, padding=1))
        for m in (self.head, self.smooth[-1]):  # an untrained refiner is bicubic
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def out_size(self) -> tuple[int, int]:
        h, w = self.config.in_size
        return int(h) * self.config.factor, int(w) * self.config.factor

    @property
    def context_frames(self) -> int:
        """Frames of context each side that make chunked refinement exact (the receptive field in time)."""
        return self.config.layers * self.config.window

    def _rope(self, T: int, h: int, w: int, offset: float, device) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE tables, kept per shape and device (at 1080p a video has ~10⁵ tokens: built once, not per call)."""
        cache = self.__dict__.setdefault("_rope_tables", {})
        key = (T, h, w, float(offset), str(device))
        if key not in cache:
            if len(cache) > 16:
                cache.clear()
            cos, sin = rope_cos_sin(token_positions(T, h, w, time_offset=offset), self.config.hidden // self.config.heads)
            cache[key] = (cos.to(device), sin.to(device))
        return cache[key]

    @torch.no_grad()
    def encode_reference(self, reference: torch.Tensor) -> ReferenceCache:
        """High-res reference frames (B, 3, Tr, H·f, W·f) in [−1, 1] → per-block K/V. Reference tokens see only
        reference tokens, so the cache is a function of the reference alone and is computed once per video."""
        return self.reference_pass(reference)

    def reference_pass(self, reference: torch.Tensor) -> ReferenceCache:
        """`encode_reference` with gradients (training)."""
        if self.ref_embed is None:
            raise ValueError("this refiner was built without a reference path (reference=False)")
        P = self.config.patch * self.config.factor
        Tr, Hr, Wr = reference.shape[2:]
        if Hr % P or Wr % P:
            raise ValueError(f"reference frames {Hr}x{Wr} are not a multiple of the output patch {P}")
        x = self.ref_embed(patchify(reference.to(self.dtype), P))
        rope = self._rope(Tr, Hr // P, Wr // P, self.config.reference_time, x.device)
        keys, values = [], []
        for block in self.blocks:
            q, k, v = block.qkv(x, rope)
            keys.append(k)
            values.append(v)
            x = block.finish(x, attend(q, k, v))
        return ReferenceCache(keys, values, [x.shape[1]], [Tr])

    def forward(self, low: torch.Tensor, reference: ReferenceCache | None = None,
                reference_keep: torch.Tensor | None = None, window: int | None = None) -> torch.Tensor:
        """`window` overrides the configured one (None: the config's; 0: full temporal attention)."""
        cfg = self.config
        p, f = cfg.patch, cfg.factor
        B, C, T, H, W = low.shape
        if C != 3 or H % p or W % p:
            raise ValueError(f"refiner input must be (B, 3, T, H, W) with H, W multiples of {p}, got {tuple(low.shape)}")
        window = cfg.window if window is None else window
        low = low.to(self.dtype)
        up = F.interpolate(low.transpose(1, 2).flatten(0, 1), scale_factor=f, mode="bicubic", align_corners=False)
        h, w = H // p, W // p
        x = self.embed(patchify(low, p))
        rope = self._rope(T, h, w, 0.0, x.device)
        for i, block in enumerate(self.blocks):
            pk = pv = None
            if reference is not None:
                pk, pv = reference.keys[i], reference.values[i]

            def attention(q, k, v, pk=pk, pv=pv):
                return window_attention(q, k, v, T, window, pk, pv, reference_keep)

            x = block(x, rope, attention)
        res = unpatchify(self.head(self.norm_out(x)), T, h, w, p * f)  # (B, 3, T, H·f, W·f)
        y = up + res.transpose(1, 2).flatten(0, 1)
        y = y + self.smooth(y)
        return y.view(B, T, 3, H * f, W * f).transpose(1, 2)

    def refine(self, frames: np.ndarray, reference: np.ndarray | None = None, *, path: str | Path = "<low-res video>",
               chunk: int = 16) -> np.ndarray:
        """`refine_frames` (uint8 frames in, uint8 frames out), for the pipeline."""
        return refine_frames(self, frames, reference, path=path, chunk=chunk)

    @torch.no_grad()
    def refine_video(self, low: torch.Tensor, reference: ReferenceCache | None = None, chunk: int = 16) -> torch.Tensor:
        """`forward` over a long video in chunks of `chunk` frames with `context_frames` of context each side: the
        same frames as one whole-video pass when the attention is local (memory bounded by the chunk)."""
        T = low.shape[2]
        if self.config.window <= 0 or T <= chunk:
            return self(low, reference)
        m = self.context_frames
        outs = []
        for s in range(0, T, chunk):
            e = min(T, s + chunk)
            lo, hi = max(0, s - m), min(T, e + m)
            outs.append(self(low[:, :, lo:hi], reference)[:, :, s - lo : e - lo])
        return torch.cat(outs, dim=2)


# ------------------------------------------------------------------------------------------------ frames in, frames out
def check_low_res(frames: np.ndarray, model: RefinerModel, path: str | Path) -> None:
    """The low-res video must have the size the refiner was trained to upsample; else one line naming `path`."""
    H, W = int(frames.shape[1]), int(frames.shape[2])
    ih, iw = (int(s) for s in model.config.in_size)
    if (H, W) != (ih, iw):
        oh, ow = model.out_size
        raise InputError(path, f"low-res video is {W}x{H}, but the refiner upsamples {iw}x{ih} by "
                               f"{model.config.factor} to {ow}x{oh}")


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (1, 3, T, H, W) in [−1, 1]."""
    return torch.from_numpy(np.array(frames, dtype=np.uint8)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0


def to_frames(x: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [−1, 1] → (T, H, W, 3) uint8."""
    return ((x[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def reference_frames(frames: np.ndarray, model: RefinerModel, n: int = 1) -> torch.Tensor:
    """The first `n` reference frames, centre square-cropped (as the base model crops) and area/bicubic-resized to
    the refiner's output size: (1, 3, n, H·f, W·f) in [−1, 1]."""
    oh, ow = model.out_size
    x = to_tensor(frames[:n])[0].transpose(0, 1)  # (n, 3, H, W)
    H, W = x.shape[-2:]
    if (H, W) != (oh, ow) and oh == ow:
        s = min(H, W)
        x = x[:, :, (H - s) // 2 : (H - s) // 2 + s, (W - s) // 2 : (W - s) // 2 + s]
    mode = "area" if x.shape[-1] > ow else "bicubic"
    x = F.interpolate(x, size=(oh, ow), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return x.clamp(-1, 1).transpose(0, 1)[None]


@torch.no_grad()
def refine_frames(model: RefinerModel, frames: np.ndarray, reference: np.ndarray | None = None, *,
                  path: str | Path = "<low-res video>", chunk: int = 16) -> np.ndarray:
    """(T, H, W, 3) uint8 low-res frames (+ the person's reference frames, any size) → (T, H·f, W·f, 3) uint8."""
    check_low_res(frames, model, path)
    dev = model.device
    cache = None
    if reference is not None and model.config.reference:
        cache = model.encode_reference(reference_frames(reference, model).to(dev, model.dtype))
    return to_frames(model.refine_video(to_tensor(frames).to(dev, model.dtype), cache, chunk=chunk))


def load_refiner(path: str | Path, device: str | torch.device = "cpu") -> RefinerModel:
    path = Path(path)
    if not (path / "config.json").exists():
        raise InputError(path, "no saved refiner here (config.json missing): run stage 08_refiner")
    return RefinerModel.from_pretrained(str(path)).to(device).eval()
