"""A small face-embedding network trained in-project on the corpus identities (seed: the identity term of the
"human-aware auxiliary losses"). No pretrained face model can be fetched here, and the offline dlib descriptor is
neither differentiable nor reliable on 64-px frames, so personality SFT uses this one, frozen: face crop
(B, 3, crop, crop) in [-1, 1] → unit-norm embedding (B, dim). Trained by train/identity.py with a cosine-margin
(ArcFace-style) classifier over the training identities; held-out identities are never seen by it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.SiLU(), nn.AvgPool2d(2))


class FaceEmbedder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, crop: int = 32, width: int = 32, dim: int = 64):
        super().__init__()
        self.features = nn.Sequential(_block(3, width), _block(width, 2 * width), _block(2 * width, 4 * width))
        self.head = nn.Linear(4 * width, dim)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"FaceEmbedder: expected (B, 3, H, W) crops, got {tuple(crops.shape)}")
        if crops.shape[-1] != self.config.crop:
            crops = F.interpolate(crops, size=(self.config.crop, self.config.crop), mode="bilinear", align_corners=False)
        h = self.features(crops).mean((2, 3))
        return F.normalize(self.head(h), dim=-1)
