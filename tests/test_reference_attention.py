"""Sparse Reference Attention: the split / cached / flex forms equal dense joint attention under the block mask."""

import warnings

import pytest
import torch

from avatarv.models.reference_attention import (
    attend,
    dense_segment_attention,
    flex_segment_attention,
    segment_attention_flops,
    segment_mask,
    sparse_segment_attention,
)


def _qkv(n, b=2, h=3, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g) for _ in range(3)]


@pytest.mark.parametrize("lengths", [[24, 40], [16, 8, 40], [1, 33], [50]])
def test_sparse_equals_dense_masked(lengths):
    q, k, v = _qkv(sum(lengths))
    dense = dense_segment_attention(q, k, v, lengths)
    torch.testing.assert_close(sparse_segment_attention(q, k, v, lengths), dense, atol=1e-5, rtol=1e-5)


def test_flex_equals_dense_masked():
    lengths = [40, 24, 64]
    q, k, v = _qkv(sum(lengths))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = flex_segment_attention(q, k, v, lengths, block_size=32)
    torch.testing.assert_close(out, dense_segment_attention(q, k, v, lengths), atol=1e-5, rtol=1e-5)


def test_mask_is_the_seed_rule():
    m = segment_mask([2, 3])
    assert m[:2, :2].all() and not m[:2, 2:].any()  # reference sees reference only
    assert m[2:].all()  # generation sees generation + reference


def test_reference_rows_ignore_generation_tokens():
    lengths = [20, 30]
    q, k, v = _qkv(50)
    out = sparse_segment_attention(q, k, v, lengths)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 20:] += 5.0
    v2[:, :, 20:] -= 3.0
    out2 = sparse_segment_attention(q, k2, v2, lengths)
    torch.testing.assert_close(out[:, :, :20], out2[:, :, :20])
    assert (out[:, :, 20:] - out2[:, :, 20:]).abs().max() > 1e-2


def test_prefix_keep_equals_no_reference():
    q, k, v = _qkv(30)
    pk, pv = _qkv(12, seed=1)[:2]
    keep = torch.tensor([True, False])
    out = attend(q, k, v, pk, pv, keep)
    torch.testing.assert_close(out[1:], attend(q[1:], k[1:], v[1:]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out[:1], attend(q[:1], k[:1], v[:1], pk[:1], pv[:1]), atol=1e-6, rtol=1e-6)


def test_broadcast_prefix_batch():
    q, k, v = _qkv(10)
    pk, pv = _qkv(7, b=1, seed=2)[:2]
    out = attend(q, k, v, pk, pv)
    torch.testing.assert_close(out, attend(q, k, v, pk.expand(2, -1, -1, -1), pv.expand(2, -1, -1, -1)))


def test_flop_count():
    # [R; G] with N_R = N_G = n: sparse needs n² + n·2n = 3n² of the dense (2n)² = 4n²
    assert segment_attention_flops([8, 8], 4, 1) == pytest.approx(0.75 * segment_attention_flops([16], 4, 1))
