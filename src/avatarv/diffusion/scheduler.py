"""The sampler: diffusers' FlowMatchEulerDiscreteScheduler (Euler on the rectified-flow ODE), set up for our flow.

sigmas run from 1 (noise) to 0; the DiT takes sigma itself as its timestep (flow time t ∈ [0, 1], flow.py).
"""

from __future__ import annotations

from diffusers import FlowMatchEulerDiscreteScheduler


def make_scheduler(shift: float = 1.0) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
