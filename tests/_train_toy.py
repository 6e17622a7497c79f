"""Toy model, data and objective for the training-loop tests (imported by tests and by their subprocesses)."""

from __future__ import annotations

import torch
from torch import nn

from avatarv.config import StageTrainConfig


class ToyNet(nn.Module):
    """Embedding-like input layer, hidden matrices, a norm, dropout and a head: every kind of parameter."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.proj_in = nn.Linear(4, d)
        self.hidden1 = nn.Linear(d, d)
        self.hidden2 = nn.Linear(d, d, bias=False)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(d, 4)

    def forward(self, x):
        h = self.proj_in(x)
        h = h + self.hidden2(torch.relu(self.hidden1(self.norm(h))))
        return self.head(self.drop(h))


class ToySource:
    """64 fixed samples; each micro-batch is a seeded shuffle slice — deterministic in (index, rank, world)."""

    def __init__(self, batch_size: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.randn(4, 4, generator=g)
        self.bs = batch_size

    def batch(self, index: int, rank: int, world: int):
        per_epoch = len(self.x) // self.bs
        epoch, pos = divmod(index, per_epoch)
        perm = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(1000 + epoch))
        idx = perm[pos * self.bs : (pos + 1) * self.bs][rank::world]
        return {"x": self.x[idx], "y": self.y[idx]}


def toy_loss(model, batch, gen, step):
    noise = torch.randn(batch["x"].shape, generator=gen, device=batch["x"].device) * 0.01  # uses the step RNG
    pred = model(batch["x"] + noise)
    loss = ((pred - batch["y"]) ** 2).mean()
    return loss, {"mse": float(loss.detach())}


def toy_cfg(**kw) -> StageTrainConfig:
    base = dict(steps=12, batch_size=8, lr=3e-3, muon_lr=0.02, warmup_steps=3, checkpoint_every=5, grad_accum=2,
                ema_decay=0.9)
    base.update(kw)
    return StageTrainConfig(**base)
