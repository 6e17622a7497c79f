"""Training of the in-project face embedder (models/face_embedder.py) on the training identities' face crops, and
identity similarity with it. Cosine-margin softmax (ArcFace, Deng et al. 2019): logits s·cos(θ + m) for the true
identity, s·cos θ for the others, so same-person crops cluster on the sphere whatever the scene.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import WindowSet
from ..models.face_embedder import FaceEmbedder
from .objectives import crop_boxes


def face_crops(frames_u8: torch.Tensor, boxes: torch.Tensor, size: int = 32) -> torch.Tensor:
    """(N, H, W, 3) uint8 + (N, 4) normalised boxes → (N, 3, size, size) in [-1, 1]."""
    x = frames_u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return crop_boxes(x, boxes.float(), size)


def train_face_embedder(ws: WindowSet, indices, *, seed: int, steps: int = 200, batch_size: int = 32,
                        lr: float = 2e-3, margin: float = 0.3, scale: float = 16.0, crop: int = 32,
                        out_dir: str | Path | None = None, progress: bool = True) -> tuple[FaceEmbedder, list[float]]:
    """Fit on every frame's face crop of the given windows (light colour/scale jitter); returns (frozen model,
    loss history). Saved with save_pretrained to `out_dir` when given (reloaded if already there)."""
    if out_dir is not None and (Path(out_dir) / "config.json").exists():
        m = FaceEmbedder.from_pretrained(str(out_dir)).eval()
        m.requires_grad_(False)
        return m, []
    idx = torch.as_tensor(np.array(indices))
    frames = ws.frames[idx].flatten(0, 1)  # (N·T, H, W, 3)
    boxes = ws.face_box[idx].flatten(0, 1)
    labels_raw = ws.identity[idx].repeat_interleave(ws.frames.shape[1])
    classes, labels = torch.unique(labels_raw, return_inverse=True)
    torch.manual_seed(seed)
    model = FaceEmbedder(crop=crop)
    weight = torch.nn.Parameter(torch.randn(len(classes), model.config.dim) * 0.1)
    opt = torch.optim.AdamW([*model.parameters(), weight], lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    hist = []
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="face embedder", leave=False)
    for _ in it:
        sel = torch.randint(len(frames), (batch_size,), generator=gen)
        jitter = (torch.rand(batch_size, 4, generator=gen) - 0.5) * 0.08
        x = face_crops(frames[sel], (boxes[sel] + jitter).clamp(0, 1), crop)
        x = x * (1 + 0.2 * (torch.rand(batch_size, 3, 1, 1, generator=gen) - 0.5))  # colour/lighting jitter
        emb = model(x)
        cos = emb @ F.normalize(weight, dim=-1).T
        y = labels[sel]
        theta = torch.acos(cos.gather(1, y[:, None]).clamp(-1 + 1e-6, 1 - 1e-6))
        logits = cos.scatter(1, y[:, None], torch.cos(theta + margin)) * scale
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(float(loss.detach()))
    model.eval().requires_grad_(False)
    if out_dir is not None:
        model.save_pretrained(str(out_dir))
    return model, hist


@torch.no_grad()
def embed_frames(model: FaceEmbedder, frames_u8: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Mean unit embedding of a window's frames: (T, H, W, 3) uint8 + (T, 4) → (dim,)."""
    e = model(face_crops(frames_u8, boxes, model.config.crop)).mean(0)
    return F.normalize(e, dim=0)
