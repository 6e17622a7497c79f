"""Ulysses sequence parallelism for Sparse Reference Attention (the seed's 8-GPU inference speed-up).

Each rank holds 1/P of the generation tokens (and 1/P of the cached reference K/V). Before attention one
all-to-all turns "all heads, my slice of the sequence" into "my 1/P of the heads, the whole sequence"; every rank
then runs the ordinary sparse attention (`reference_attention.attend`) on its heads, and a second all-to-all
turns the result back. Attention is exact (no approximation): the test compares it with one process.
Heads must divide by the world size; sequence lengths too (pad upstream).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..models.reference_attention import attend


def _all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, group=None) -> torch.Tensor:
    world = dist.get_world_size(group)
    if world == 1:
        return x
    inputs = [t.contiguous() for t in torch.tensor_split(x, world, dim=scatter_dim)]
    outputs = [torch.empty_like(inputs[0]) for _ in range(world)]
    dist.all_to_all(outputs, inputs, group=group)
    return torch.cat(outputs, dim=gather_dim)


def seq_to_heads(x: torch.Tensor, group=None) -> torch.Tensor:
    """(B, H, N/P, d) sequence-sharded → (B, H/P, N, d) head-sharded."""
    return _all_to_all(x, scatter_dim=1, gather_dim=2, group=group)


def heads_to_seq(x: torch.Tensor, group=None) -> torch.Tensor:
    """(B, H/P, N, d) head-sharded → (B, H, N/P, d) sequence-sharded."""
    return _all_to_all(x, scatter_dim=2, gather_dim=1, group=group)


def ulysses_reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    ref_k: torch.Tensor | None = None,
    ref_v: torch.Tensor | None = None,
    group=None,
) -> torch.Tensor:
    """Generation queries over [generation; reference] keys with every tensor sharded along the sequence.

    q, k, v: (B, H, N_G/P, d) this rank's generation tokens; ref_k, ref_v: (B, H, N_R/P, d) this rank's slice of
    the cached reference K/V (re-sharded once per generation in practice; here per call for clarity).
    Returns (B, H, N_G/P, d), equal to single-device `attend(q, k, v, ref_k, ref_v)` on the full tensors.
    """
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    if q.shape[1] % world:
        raise ValueError(f"ulysses: {q.shape[1]} heads do not divide over {world} ranks")
    qh, kh, vh = (seq_to_heads(t, group) for t in (q, k, v))
    rk = seq_to_heads(ref_k, group) if ref_k is not None else None
    rv = seq_to_heads(ref_v, group) if ref_v is not None else None
    return heads_to_seq(attend(qh, kh, vh, rk, rv), group)
