"""High-resolution training pairs for the refiner (stage 08): corpus clips re-rendered at the refiner's output size,
and the low-res inputs the base model would give for them.

The corpus renderer (data/clips.py `make_clip`) is resolution-free: the same identity, scene seed and clip seed give
the same person, light, speech and motion at any size, so one clean clip per (identity, scene) is rendered again at
the output size (e.g. 256 px for the tiny 64 → 256 refiner). The low-res input imitates the base model's output,
which is a VAE decode at the base size: the high-res frames are area-downsampled to the base size and passed through
the stage-02 VAE (encode → decode), which adds the decoder's own softness and artefacts; training adds random blur
and noise on top (train/refiner.py `degrade`). Splits follow the corpus: the last `holdout_identities` identities are
held out (the refiner never trains on them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .clips import make_clip
from .identities import build_identities, stable_seed
from .render import face_box


@dataclass
class HiresSet:
    """One clip per (identity, scene): row i of each tensor is clip i."""

    frames: torch.Tensor  # (N, T, S, S, 3) uint8 at the output size
    low: torch.Tensor  # (N, T, s, s, 3) uint8 the base-like low-res input (VAE round trip of the downsampled frames)
    face_box: torch.Tensor  # (N, T, 4) normalised [x0, y0, x1, y1]
    meta: list[dict]  # clip_id, identity, scene, split

    def __len__(self) -> int:
        return len(self.meta)

    def indices(self, split: str) -> np.ndarray:
        return np.array([i for i, m in enumerate(self.meta) if m["split"] == split], dtype=np.int64)

    def reference_of(self, i: int) -> int:
        """The reference clip of clip i: the same person in the next scene (cross-scene, as the benchmark pairs)."""
        same = [j for j, m in enumerate(self.meta) if m["identity"] == self.meta[i]["identity"] and j != i]
        if not same:
            return i
        later = [j for j in same if self.meta[j]["scene"] > self.meta[i]["scene"]]
        return (later or same)[0]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"frames": self.frames, "low": self.low, "face_box": self.face_box, "meta": self.meta}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> HiresSet:
        return cls(**torch.load(path, weights_only=False))


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def render_clips(cfg, size: int, n_frames: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(N, T, size, size, 3) uint8 frames, (N, T, 4) normalised face boxes and the rows of one clean clip per
    (identity, scene), rendered with the corpus's own seeds (clip `id###_s#_c0`)."""
    c = cfg.corpus
    idents = build_identities(c.identities, cfg.seed, list(c.languages))
    holdout = min(cfg.train.holdout_identities, c.identities - 1)
    jobs = [(i, s) for i in range(c.identities) for s in range(c.scenes)]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc=f"render {size}px", leave=False)
    frames, boxes, meta = [], [], []
    for i, s in jobs:
        clip_id = f"id{i:03d}_s{s}_c0"
        clip = make_clip(idents[i], s, stable_seed(cfg.seed, "clip", clip_id), cfg.seed, n_frames=n_frames, size=size,
                         fps=c.fps, sample_rate=c.sample_rate)
        frames.append(clip.frames)
        boxes.append(np.clip(np.asarray([face_box(lm) for lm in clip.landmarks], np.float32) / size, 0.0, 1.0))
        meta.append({"clip_id": clip_id, "identity": idents[i].identity, "scene": s,
                     "split": "holdout" if i >= c.identities - holdout else "train"})
    return np.stack(frames), np.stack(boxes), meta


@torch.no_grad()
def base_like(frames: torch.Tensor, in_size: tuple[int, int], vae=None, batch: int = 8) -> torch.Tensor:
    """(N, T, S, S, 3) uint8 → (N, T, h, w, 3) uint8: area-downsampled to the base size, then (when `vae` is given)
    through the VAE's encode → decode, as every base-model frame is a VAE decode."""
    out = []
    for i in range(0, len(frames), batch):
        x = frames[i : i + batch].permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0  # (b, T, 3, S, S)
        b, T = x.shape[:2]
        x = F.interpolate(x.flatten(0, 1), size=tuple(in_size), mode="area").view(b, T, 3, *in_size)
        if vae is not None:
            dev = next(vae.parameters()).device
            v = x.transpose(1, 2).to(dev, vae.dtype)
            x = vae.decode(vae.encode(v)).float().cpu()[:, :, :T].transpose(1, 2)
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2))
    return torch.cat(out)


def hires_path(cfg, cache_dir: str | Path, vae=None) -> Path:
    """The cache file of `build_hires_set` for these settings (the corpus seeds, sizes and the VAE)."""
    r = cfg.refiner
    size = int(r.in_size[0]) * r.factor
    vae_key = None
    if vae is not None:
        vae_key = [dict(vae.config), float(next(vae.parameters()).detach().float().sum())]
    key = _key(cfg.corpus.identities, cfg.corpus.scenes, cfg.corpus.fps, cfg.seed, cfg.train.holdout_identities,
               size, r.in_size, r.render_frames, vae_key)
    return Path(cache_dir) / f"hires_{size}px_f{r.render_frames}_{key}.pt"


def build_hires_set(cfg, *, vae=None, cache_dir: str | Path | None = None, progress: bool = True) -> HiresSet:
    """Render (or load from `cache_dir`) the refiner's high-res clips and their base-like low-res inputs."""
    r = cfg.refiner
    if int(r.in_size[0]) != int(r.in_size[1]):
        raise ValueError(f"params.yaml refiner.in_size {r.in_size}: training renders square clips only")
    cache = hires_path(cfg, cache_dir, vae) if cache_dir is not None else None
    if cache is not None and cache.exists():
        return HiresSet.load(cache)
    frames, boxes, meta = render_clips(cfg, int(r.in_size[0]) * r.factor, r.render_frames, progress)
    hi = torch.from_numpy(frames)
    hs = HiresSet(frames=hi, low=base_like(hi, tuple(int(s) for s in r.in_size), vae), face_box=torch.from_numpy(boxes),
                  meta=meta)
    if cache is not None:
        hs.save(cache)
    return hs
