"""Optimisers and learning-rate schedules for every curriculum stage (seed: "Muon for most parameters, AdamW for
embeddings").

Muon (PyTorch's `torch.optim.Muon`, torch >= 2.9) orthogonalises the momentum of each 2-D *hidden* weight matrix
with Newton-Schulz iterations; it is defined only for matrices and is a poor fit for the layers that map to or
from data space. So the split is:

- Muon: 2-D weights of `nn.Linear` layers inside the network body (attention q/k/v/o, MLPs, cross-attention);
- AdamW: everything else — embeddings (`nn.Embedding`, patch/time/text/audio/motion input projections), norms,
  biases, conv kernels, and output heads — plus any parameter whose name matches an `adamw_patterns` entry.

Both optimisers share one warmup + cosine schedule shape (`warmup_cosine`), each with its own peak rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# Names of input/output layers kept on AdamW even though their weights are 2-D matrices (seed: AdamW for
# embeddings). Matched as substrings of the full parameter name.
DEFAULT_ADAMW_PATTERNS: tuple[str, ...] = (
    "embed", "patch", "proj_in", "proj_out", "motion_out", "head", "time_", "timestep", "pos_", "norm", "final",
    "lora_", "scale_shift", "modulation", "null_",
)


@dataclass
class ParamSplit:
    """Which parameters go to Muon and which to AdamW (names kept for tests and logs)."""

    muon: list[tuple[str, nn.Parameter]]
    adamw: list[tuple[str, nn.Parameter]]

    @property
    def muon_names(self) -> list[str]:
        return [n for n, _ in self.muon]

    @property
    def adamw_names(self) -> list[str]:
        return [n for n, _ in self.adamw]


def split_params(model: nn.Module, adamw_patterns: tuple[str, ...] = DEFAULT_ADAMW_PATTERNS) -> ParamSplit:
    """Partition the model's trainable parameters: hidden `nn.Linear` weight matrices → Muon, the rest → AdamW.

    A model may add names through a class attribute `_adamw_param_patterns` (e.g. its own head's name).
    """
    patterns = tuple(adamw_patterns) + tuple(getattr(model, "_adamw_param_patterns", ()))
    linear_weights = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Linear) and not isinstance(m, nn.Embedding)
    }
    muon, adamw, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        hidden_matrix = p.ndim == 2 and id(p) in linear_weights and not any(s in name for s in patterns)
        (muon if hidden_matrix else adamw).append((name, p))
    return ParamSplit(muon=muon, adamw=adamw)


def build_optimizers(
    model: nn.Module,
    *,
    lr: float,
    muon_lr: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.95),
    use_muon: bool = True,
) -> list[torch.optim.Optimizer]:
    """[Muon, AdamW] (or [AdamW] alone when there is no hidden matrix, or when `use_muon` is off, e.g. under
    FSDP whose flat shards are not matrices). Muon uses Keller Jordan's original shape-based rate adjustment, so
    `muon_lr` is on his scale (~0.02)."""
    split = split_params(model)
    opts: list[torch.optim.Optimizer] = []
    adamw_params = [p for _, p in split.adamw]
    if use_muon and split.muon:
        opts.append(
            torch.optim.Muon(
                [p for _, p in split.muon], lr=muon_lr, weight_decay=weight_decay, momentum=0.95,
                adjust_lr_fn="original",
            )
        )
    else:
        adamw_params = [p for _, p in split.muon] + adamw_params
    decay = [p for p in adamw_params if p.ndim >= 2]
    no_decay = [p for p in adamw_params if p.ndim < 2]
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0})
              if g["params"]]
    if groups:
        opts.append(torch.optim.AdamW(groups, lr=lr, betas=betas, eps=1e-8))
    return opts


def warmup_cosine(step: int, *, warmup: int, total: int, floor: float = 0.1) -> float:
    """Multiplier of the peak rate: linear warmup from ~0 over `warmup` steps, then cosine down to `floor`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_schedulers(
    optimizers: list[torch.optim.Optimizer], *, warmup: int, total: int, floor: float = 0.1
) -> list[torch.optim.lr_scheduler.LambdaLR]:
    return [
        torch.optim.lr_scheduler.LambdaLR(o, lambda s: warmup_cosine(s, warmup=warmup, total=total, floor=floor))
        for o in optimizers
    ]
