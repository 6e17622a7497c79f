"""Muon/AdamW parameter split and the warmup + cosine schedule."""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from _train_toy import ToyNet
from torch import nn

from avatarv.train.optim import build_optimizers, split_params, warmup_cosine


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Conv3d(8, 32, (1, 2, 2), stride=(1, 2, 2))
        self.text_embed = nn.Embedding(10, 32)
        self.attn_qkv = nn.Linear(32, 96)
        self.ff = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
        self.norm1 = nn.LayerNorm(32)
        self.proj_out = nn.Linear(32, 8)
        self.frozen = nn.Linear(32, 32)
        self.frozen.requires_grad_(False)


def test_split_puts_only_hidden_matrices_on_muon():
    split = split_params(Block())
    assert sorted(split.muon_names) == ["attn_qkv.weight", "ff.0.weight", "ff.2.weight"]
    assert sorted(split.adamw_names) == sorted([
        "patch_embed.weight", "patch_embed.bias", "text_embed.weight", "attn_qkv.bias", "ff.0.bias", "ff.2.bias",
        "norm1.weight", "norm1.bias", "proj_out.weight", "proj_out.bias",
    ])
    assert all(p.ndim == 2 for _, p in split.muon)


def test_model_can_add_its_own_adamw_names():
    m = Block()
    m._adamw_param_patterns = ("ff.2",)
    assert sorted(split_params(m).muon_names) == ["attn_qkv.weight", "ff.0.weight"]


def test_optimizers_cover_every_trainable_parameter_once():
    m = ToyNet()
    muon, adamw = build_optimizers(m, lr=1e-3, muon_lr=0.02)
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    ids = [id(p) for o in (muon, adamw) for g in o.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters()) and len(set(ids)) == len(ids)
    (only_adamw,) = build_optimizers(m, lr=1e-3, muon_lr=0.02, use_muon=False)
    assert sum(len(g["params"]) for g in only_adamw.param_groups) == len(list(m.parameters()))


def test_muon_update_is_orthogonalised():
    """One Muon step from zero momentum moves a square matrix by lr·NS(grad): its singular values end up near 1,
    whatever the gradient's scale (the property that distinguishes it from SGD/Adam)."""
    w = nn.Parameter(torch.zeros(16, 16))
    opt = torch.optim.Muon([w], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False, adjust_lr_fn="original")
    w.grad = torch.randn(16, 16) * 1e-3
    opt.step()
    s = torch.linalg.svdvals(w.detach())
    assert 0.5 < s.min() and s.max() < 1.3


def test_warmup_cosine_shape():
    vals = [warmup_cosine(s, warmup=10, total=110, floor=0.1) for s in range(111)]
    assert vals[0] == 0.1 and vals[9] == 1.0  # linear warmup reaches the peak at the end of warmup
    assert math.isclose(vals[60], 0.55, abs_tol=1e-9)  # half-way down the cosine
    assert math.isclose(vals[110], 0.1) and all(a >= b for a, b in pairwise(vals[10:]))
