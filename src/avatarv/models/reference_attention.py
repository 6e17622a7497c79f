"""Sparse Reference Attention (the seed's core mechanism) and its references for testing.

Tokens come in ordered *segments*: reference segments R0 (the reference video), R1 (the global appearance anchor, the
first latent frames of the first generated chunk), ..., and last the generation segment G. Each segment's queries see
their own keys and all *earlier* segments' keys (block-causal over segments). With two segments [R; G] that is the
seed's rule: R sees R only; G sees G ∪ R.

Three implementations, equal up to float rounding (tested):
- `attend` / `sparse_segment_attention`: one SDPA call per segment, `attn(Q_s, [K_s; K_<s], [V_s; V_<s])`
  (flash / cuDNN backends on GPU; the form the cached model uses — K_<s come from the ReferenceCache);
- `flex_segment_attention`: one FlexAttention call with a block mask (skips the masked blocks);
- `dense_segment_attention`: dense SDPA with an explicit boolean (N, N) mask: the slow, obvious reference.
Imports only torch, so benchmarks/attention_gpu.py can use it on a machine without diffusers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    prefix_k: torch.Tensor | None = None,
    prefix_v: torch.Tensor | None = None,
    prefix_keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(Q [K; K_prefix]ᵀ/√d) [V; V_prefix] for (B, H, N, d) tensors.

    prefix_k/v may have batch 1 (one cached reference shared by several CFG branches) and are broadcast.
    prefix_keep (B,) bool drops the prefix for some samples (reference condition dropout in training): their
    queries then see only k, v — exactly what they would see with no reference at all.
    """
    if prefix_k is None:
        return F.scaled_dot_product_attention(q, k, v)
    if prefix_k.shape[0] != q.shape[0]:
        prefix_k = prefix_k.expand(q.shape[0], *prefix_k.shape[1:])
        prefix_v = prefix_v.expand(q.shape[0], *prefix_v.shape[1:])
    keys = torch.cat([k, prefix_k.to(k.dtype)], dim=2)
    values = torch.cat([v, prefix_v.to(v.dtype)], dim=2)
    mask = None
    if prefix_keep is not None:
        n_own, n_prefix = k.shape[2], prefix_k.shape[2]
        keep = prefix_keep.to(torch.bool).view(-1, 1, 1, 1).expand(-1, 1, 1, n_prefix)
        mask = torch.cat([torch.ones(q.shape[0], 1, 1, n_own, dtype=torch.bool, device=q.device), keep], dim=-1)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


def segment_ids(lengths: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """(N,) long: the segment index of every token."""
    return torch.repeat_interleave(torch.arange(len(lengths), device=device), torch.tensor(list(lengths), device=device))


def segment_mask(lengths: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """(N, N) bool: query i may see key j iff segment(j) <= segment(i)."""
    seg = segment_ids(lengths, device)
    return seg[None, :] <= seg[:, None]


def dense_segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Reference implementation: dense joint attention over all segments with the explicit block mask."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=segment_mask(lengths, q.device))


def sparse_segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """One SDPA call per segment: attn(Q_s, [K_s; K_<s], [V_s; V_<s]). No mask, so flash/cuDNN apply."""
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)
    outs = []
    for s in range(len(lengths)):
        lo, hi = bounds[s], bounds[s + 1]
        if hi == lo:
            continue
        pk = k[:, :, :lo] if lo else None
        pv = v[:, :, :lo] if lo else None
        outs.append(attend(q[:, :, lo:hi], k[:, :, lo:hi], v[:, :, lo:hi], pk, pv))
    return torch.cat(outs, dim=2)


def flex_segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: Sequence[int], block_size: int = 128) -> torch.Tensor:
    """FlexAttention with a block mask built from the segment rule (eager on CPU; compile it on GPU for speed)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    seg = segment_ids(lengths, q.device)
    n = seg.shape[0]

    def mask_mod(b, h, qi, ki):
        return seg[ki] <= seg[qi]

    block = create_block_mask(mask_mod, None, None, n, n, device=q.device, BLOCK_SIZE=min(block_size, max(n, 1)))
    return flex_attention(q, k, v, block_mask=block)


def full_joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Benchmark baseline only: every token sees every token (naive concatenation of the reference into the
    sequence). NOT equal to the three functions above: the reference would then depend on the generation."""
    return F.scaled_dot_product_attention(q, k, v)


def attention_flops(n_query: int, n_key: int, head_dim: int, heads: int, batch: int = 1) -> float:
    """Forward FLOPs of softmax attention (two matmuls, 2 FLOPs per multiply-add)."""
    return 4.0 * batch * heads * n_query * n_key * head_dim


def segment_attention_flops(lengths: Sequence[int], head_dim: int, heads: int, batch: int = 1) -> float:
    """FLOPs actually needed under the segment mask (what the sparse form computes)."""
    total, seen = 0.0, 0
    for n in lengths:
        seen += n
        total += attention_flops(n, seen, head_dim, heads, batch)
    return total
