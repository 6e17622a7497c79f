"""Building blocks of the Avatar V DiT: adaLN-modulated self-attention, text / windowed-audio cross-attention, FFN.

Implements the seed's DiT block (ARCHITECTURE.md "Tokens", "Audio"). Hidden states are frame-major token sequences
(per latent frame: H'·W' video tokens, then one motion token), so per-frame adaLN modulation (noisy frames use t,
clean bridge / reference frames use t = 0) and the per-latent-frame local audio window are plain reshapes.
A sequence may hold several *segments* (reference segments then generation) each with its own modulation; the
block's self-attention takes the attention rule as a callable, so the cached, sparse, flex and dense paths share
every weight and line of code except the attention call itself. Imports only torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .rope import apply_rope

# modulation slots of a block: (shift, scale, gate) for self-attention, then for the feed-forward
SHIFT1, SCALE1, GATE1, SHIFT2, SCALE2, GATE2 = range(6)


@dataclass
class Segment:
    """A run of frames in the token sequence sharing one token layout and modulation source."""

    n_frames: int
    tokens_per_frame: int
    mod: torch.Tensor  # (B or 1, n_frames or 1, K, D) shared modulation (time embedding projected), before block tables

    @property
    def n_tokens(self) -> int:
        return self.n_frames * self.tokens_per_frame


def per_frame(x: torch.Tensor, layout: Sequence[Segment], fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply fn(x_frames (B, T, S, D), mod (B, T|1, K, D)) segment by segment."""
    if len(layout) == 1:
        s = layout[0]
        return fn(x.unflatten(1, (s.n_frames, s.tokens_per_frame)), s.mod).flatten(1, 2)
    parts = x.split([s.n_tokens for s in layout], dim=1)
    return torch.cat([fn(p.unflatten(1, (s.n_frames, s.tokens_per_frame)), s.mod).flatten(1, 2) for p, s in zip(parts, layout)], 1)


def sinusoidal_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) → (B, dim) sinusoidal features of t·1000 (flow time in [0, 1] scaled like diffusion steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class TimestepEmbedding(nn.Module):
    """Flow time → (B, D) embedding → shared modulation (B, 6, D) for all blocks + (B, 2, D) for the output layer."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.to_block_mod = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.to_out_mod = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, t: torch.Tensor, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`extra` (B, D) is added to the time embedding before the modulation heads (the guidance embedding)."""
        emb = self.mlp(sinusoidal_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))
        if extra is not None:
            emb = emb + extra.to(emb.dtype)
        return self.to_block_mod(emb).unflatten(-1, (6, -1)), self.to_out_mod(emb).unflatten(-1, (2, -1))


class CrossAttention(nn.Module):
    """Queries from the video/motion tokens, keys/values from a context (text tokens or an audio window)."""

    def __init__(self, dim: int, heads: int, eps: float = 1e-6):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.to_out = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(-3, -2)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, N, D), context (B, L, D), mask (B, L) bool (True = attend)."""
        q = self.q_norm(self._heads(self.to_q(x)))
        k, v = self.to_kv(context).chunk(2, dim=-1)
        k, v = self.k_norm(self._heads(k)), self._heads(v)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None, None, :])
        return self.to_out(o.transpose(1, 2).flatten(2))

    def windowed(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
        """Local cross-attention: the tokens of latent frame j see only context[:, j] (its audio window).

        x (B, T·S, D), context (B, T, W, D), mask (B, T, W) bool.
        """
        B, T, W, D = context.shape
        xf = x.reshape(B * T, tokens_per_frame, D)
        o = self.forward(xf, context.reshape(B * T, W, D), mask.reshape(B * T, W))
        return o.reshape(B, T * tokens_per_frame, D)


class AvatarBlock(nn.Module):
    """adaLN(t) → self-attention (rule given by the caller) → text x-attn → audio x-attn (local) → adaLN(t) → FFN."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden {dim} not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.attn_out = nn.Linear(dim, dim)
        self.text_norm = nn.LayerNorm(dim, eps=eps)
        self.text_attn = CrossAttention(dim, heads, eps)
        self.audio_norm = nn.LayerNorm(dim, eps=eps)
        self.audio_attn = CrossAttention(dim, heads, eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        # per-block offset added to the shared time modulation (Wan2.1 style); random, not zero, at init so an
        # untrained model's attention paths are live (tests of equivalence would be vacuous otherwise)
        self.mod_table = nn.Parameter(torch.randn(1, 1, 6, dim) / dim**0.5)

    # --- sub-layers -------------------------------------------------------------------------------------------
    def _modulated(self, x: torch.Tensor, layout: Sequence[Segment], norm: nn.Module, i_shift: int, i_scale: int) -> torch.Tensor:
        table = self.mod_table

        def fn(xf, mod):
            m = mod + table
            return xf * (1 + m[:, :, i_scale, None]) + m[:, :, i_shift, None]

        return per_frame(norm(x), layout, fn)

    def _gated(self, y: torch.Tensor, layout: Sequence[Segment], i_gate: int) -> torch.Tensor:
        table = self.mod_table
        return per_frame(y, layout, lambda yf, mod: yf * (mod + table)[:, :, i_gate, None])

    def qkv(self, x: torch.Tensor, layout: Sequence[Segment], rope: tuple[torch.Tensor, torch.Tensor]):
        """(B, H, N, d) queries, keys, values; q/k RMS-normed and rotated (keys are what the cache stores)."""
        h = self._modulated(x, layout, self.norm1, SHIFT1, SCALE1)
        q, k, v = self.to_qkv(h).unflatten(-1, (3, self.heads, self.head_dim)).unbind(2)
        q = apply_rope(self.q_norm(q).transpose(1, 2), *rope)
        k = apply_rope(self.k_norm(k).transpose(1, 2), *rope)
        return q, k, v.transpose(1, 2)

    def attention_residual(self, x: torch.Tensor, o: torch.Tensor, layout: Sequence[Segment]) -> torch.Tensor:
        return x + self._gated(self.attn_out(o.transpose(1, 2).flatten(2)), layout, GATE1)

    def cross_attention(self, x: torch.Tensor, text: tuple | None, audio: tuple | None, tokens_per_frame: int) -> torch.Tensor:
        """Generation tokens only (never the reference: that keeps the reference cache exact)."""
        if text is not None:
            x = x + self.text_attn(self.text_norm(x), *text)
        if audio is not None:
            x = x + self.audio_attn.windowed(self.audio_norm(x), *audio, tokens_per_frame)
        return x

    def feed_forward(self, x: torch.Tensor, layout: Sequence[Segment]) -> torch.Tensor:
        h = self._modulated(x, layout, self.norm2, SHIFT2, SCALE2)
        return x + self._gated(self.ffn(h), layout, GATE2)

    def forward(self, x, layout, rope, attention, text=None, audio=None, tokens_per_frame: int = 1):
        """One block on a single-segment sequence (the cached generation path); attention(q, k, v) -> o."""
        q, k, v = self.qkv(x, layout, rope)
        x = self.attention_residual(x, attention(q, k, v), layout)
        x = self.cross_attention(x, text, audio, tokens_per_frame)
        return self.feed_forward(x, layout)
