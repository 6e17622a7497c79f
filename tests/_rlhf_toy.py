"""A 1-D rectified flow for the GRPO tests: velocity v(x, t) = w·x + b + c·t (w = b = c = 0 at start, so the ODE maps
noise ε to the sample ε: mean 0), sampled with the same SDE steps (diffusion/flow.py) as the avatar pipeline, and
a reward peaked at x = 2."""

import itertools

import torch
from torch import nn

from avatarv.diffusion.flow import sde_mean, sde_std
from avatarv.train.rlhf import Rollout

OPTIMUM = 2.0


class ToyVelocity(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))
        self.c = nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return self.w * x + self.b + self.c * t


class ToyTask:
    def __init__(self, prompts=8, group_size=8, steps=4, noise_level=0.7):
        self.prompts, self.group_size, self.steps, self.noise_level = prompts, group_size, steps, noise_level
        self.grid = torch.linspace(1.0, 0.0, steps + 1).tolist()

    def rollout(self, policy, step, gen):
        n = self.prompts * self.group_size
        x = torch.randn(n, 1, generator=gen)
        steps = []
        for i in range(self.steps):
            t, t_next = self.grid[i], self.grid[i + 1]
            v = policy(x, t)
            if i < self.steps - 1:  # the last step stays an Euler step, as in the pipeline
                sigma, std = sde_std(t, t_next, self.noise_level, self.grid[1])
                mean = sde_mean(x, v, t, t_next, sigma)
                nxt = mean + std * torch.randn(x.shape, generator=gen)
                steps.append({"t": t, "t_next": t_next, "sigma": sigma, "std": std, "x": x, "mean": mean, "next": nxt})
                x = nxt
            else:
                x = x + (t_next - t) * v
        terms = {"closeness": -(x[:, 0] - OPTIMUM) ** 2}
        return Rollout(steps=steps, rewards=terms["closeness"], terms=terms)

    def mean(self, model, rollout, j):
        st = rollout.steps[j]
        return sde_mean(st["x"], model(st["x"], st["t"]), st["t"], st["t_next"], st["sigma"])


@torch.no_grad()
def ode_mean(policy, steps=4, n=4096, seed=0):
    """Mean of the deterministic (ODE) samples."""
    x = torch.randn(n, 1, generator=torch.Generator().manual_seed(seed))
    grid = torch.linspace(1.0, 0.0, steps + 1).tolist()
    for t, t_next in itertools.pairwise(grid):
        x = x + (t_next - t) * policy(x, t)
    return float(x.mean())
