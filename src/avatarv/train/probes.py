"""Interim evaluation probes for the stage proofs, used until / unless the Eval issue's metrics cover 64-px output.

`MotionProbe`: a small CNN trained on the training identities' frames to regress the corpus ground-truth motion
vector (models/motion.py layout) of each frame. It turns generated frames back into a motion stream, which gives
- lip sync: Pearson correlation between the probe's mouth opening on the generated frames and the speech-driven
  ground-truth mouth opening of the target (a static frame scores 0: it has no variance);
- motion style: `motion_style_similarity` (models/motion.py) between the style statistics of the generated motion
  and of the reference clip's motion (both through the probe, so probe bias cancels), restricted to the
  statistics a 9-frame window can estimate (energies and mouth scale, not rates or frequencies).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import WindowSet

WINDOW_STYLE_KEYS = ("sway_energy", "nod_energy", "mouth_scale", "brow_energy", "expr_energy")


class MotionProbe(nn.Module):
    def __init__(self, motion_dim: int = 16, width: int = 32):
        super().__init__()
        c = width
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 3, 2, 1), nn.SiLU(), nn.Conv2d(c, 2 * c, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * c, 4 * c, 3, 2, 1), nn.SiLU(), nn.Conv2d(4 * c, 4 * c, 3, 2, 1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16 * c, motion_dim),
        )

    def forward(self, frames_u8: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 → (N, motion_dim)."""
        x = frames_u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-1] != 64:
            x = F.interpolate(x, size=(64, 64), mode="area")
        return self.net(x)


def train_motion_probe(ws: WindowSet, indices, *, seed: int, steps: int = 200, batch_size: int = 32,
                       lr: float = 2e-3, progress: bool = True) -> MotionProbe:
    idx = torch.as_tensor(np.array(indices))
    frames = ws.frames[idx].flatten(0, 1)
    target = ws.motion[idx].flatten(0, 1)
    scale = target.std(0).clamp(min=1e-3)  # every channel equally important
    torch.manual_seed(seed)
    probe = MotionProbe(target.shape[1])
    opt = torch.optim.AdamW(probe.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="motion probe", leave=False)
    for _ in it:
        sel = torch.randint(len(frames), (batch_size,), generator=gen)
        loss = (((probe(frames[sel]) - target[sel]) / scale) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe.eval().requires_grad_(False)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


@torch.no_grad()
def lip_sync_corr(probe: MotionProbe, frames_u8: torch.Tensor, target_motion: torch.Tensor) -> float:
    """Correlation of the probe's mouth opening (motion channel 5) with the target's ground-truth opening."""
    return pearson(probe(frames_u8)[:, 5].numpy(), target_motion[: len(frames_u8), 5].numpy())


@torch.no_grad()
def style_similarity(probe: MotionProbe, frames_u8: torch.Tensor, ref_frames_u8: torch.Tensor) -> float:
    from ..models.motion import motion_style_similarity, motion_style_stats

    a = motion_style_stats(probe(frames_u8).numpy())
    b = motion_style_stats(probe(ref_frames_u8).numpy())
    return motion_style_similarity({k: a[k] for k in WINDOW_STYLE_KEYS}, {k: b[k] for k in WINDOW_STYLE_KEYS})
