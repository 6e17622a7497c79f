"""Stage 02_vae: train the causal video VAE from scratch on the corpus' clean clips (issue 6).

Seed: the generator works in a compressed video latent space; here that space is learned from the talking-head
corpus itself. Clips are decoded once, resized to `cfg.vae.size` and kept in memory; windows of `cfg.vae.frames`
frames are drawn as a pure function of (seed, step) and trained with the shared accelerate loop (train/loop.py:
checkpoints, exact resume). Loss: L1 with extra weight inside the manifest face box (the face is what viewers
judge) + a tiny KL. After training, `scaling_factor` is set so the scaled latents have unit std, and held-out
identities' windows are scored (PSNR/SSIM overall and on the face box).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, StageTrainConfig
from ..models.vae import AvatarVideoVAE
from .loop import step_seed, train_loop


# --------------------------------------------------------------------------------------------- data
@dataclass
class VAEClips:
    """Clips resized to `size`: frames[i] (T_i, S, S, 3) uint8 and face[i] (T_i, 4) box in [0,1] (x0,y0,x1,y1)."""

    frames: list[np.ndarray]
    face: list[np.ndarray]
    clip_ids: list[str]

    def __len__(self) -> int:
        return len(self.frames)


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _face_boxes(boxes: Any, w: float, h: float, n: int) -> np.ndarray:
    out = np.full((n, 4), np.nan, np.float32)
    for i, b in enumerate(list(boxes)[:n]):
        if b is not None and len(b) == 4:
            out[i] = [b[0] / w, b[1] / h, b[2] / w, b[3] / h]
    ok = np.isfinite(out).all(1)
    if not ok.any():
        out[:] = [0.25, 0.2, 0.75, 0.85]  # centred-face prior
        return out
    idx = np.where(ok)[0]
    return out[idx[np.abs(np.arange(n)[:, None] - idx[None]).argmin(1)]]


def load_vae_clips(corpus_dir: str | Path, size: int, split: str, max_clips: int = 0, min_frames: int = 1,
                   progress: bool = True) -> VAEClips:
    """Clean clips of `split` ('train' | 'holdout') from a corpus manifest, resized to size x size."""
    from ..data.datasets import load_training_clips
    from ..media import read_video

    man = load_training_clips(corpus_dir)
    man = man[man["split"] == split]
    if max_clips:
        man = man.iloc[np.linspace(0, len(man) - 1, min(max_clips, len(man))).round().astype(int)]
    frames, faces, ids = [], [], []
    rows = man.to_dict("records")
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc=f"load {split} clips", leave=False)
    for row in rows:
        video = read_video(row["abs_path"])
        if len(video.frames) < min_frames:
            continue
        h, w = video.frames.shape[1:3]
        frames.append(_resize(video.frames, size))
        faces.append(_face_boxes(row["face_box"], w, h, len(video.frames)))
        ids.append(row["clip_id"])
    return VAEClips(frames, faces, ids)


def to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, S, S, 3) uint8 -> (3, T, S, S) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def face_mask(boxes: np.ndarray, size: int) -> torch.Tensor:
    """(T, 4) normalised boxes -> (1, T, S, S) {0,1} mask."""
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    b = torch.from_numpy(np.asarray(boxes, np.float32))
    inx = (grid[None, :] >= b[:, 0:1]) & (grid[None, :] <= b[:, 2:3])
    iny = (grid[None, :] >= b[:, 1:2]) & (grid[None, :] <= b[:, 3:4])
    return (iny[:, :, None] & inx[:, None, :]).float()[None]


class WindowSource:
    """Loop BatchSource: batch `index` = `batch_size` random windows, a pure function of (seed, index, rank)."""

    def __init__(self, clips: VAEClips, frames: int, batch_size: int, seed: int, color_aug: bool = False):
        self.clips, self.frames, self.batch_size, self.seed = clips, frames, batch_size, seed
        self.color_aug = color_aug
        self.usable = [i for i, f in enumerate(clips.frames) if len(f) >= frames]
        if not self.usable:
            raise ValueError(f"no training clip has {frames} frames")

    def window(self, clip: int, start: int) -> dict[str, torch.Tensor]:
        f = self.clips.frames[clip][start : start + self.frames]
        return {"video": to_video_tensor(f), "face": face_mask(self.clips.face[clip][start : start + self.frames],
                                                                f.shape[1])}

    def batch(self, index: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(step_seed(self.seed, index, rank))
        items = []
        for _ in range(self.batch_size):
            c = self.usable[int(rng.integers(len(self.usable)))]
            start = int(rng.integers(len(self.clips.frames[c]) - self.frames + 1))
            item = self.window(c, start)
            if rng.random() < 0.5:  # horizontal flip: faces are near-symmetric, doubles the data
                item = {k: v.flip(-1) for k, v in item.items()}
            if self.color_aug and rng.random() < 0.5:  # RGB permutation: unseen scene colours (held-out
                item["video"] = item["video"][rng.permutation(3)]  # backgrounds) must still reconstruct
            items.append(item)
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def evaluation_windows(clips: VAEClips, frames: int, count: int) -> list[tuple[int, int]]:
    """`count` (clip, start) windows spread evenly over the clips and their length (deterministic)."""
    usable = [i for i, f in enumerate(clips.frames) if len(f) >= frames]
    out = []
    for k in range(count if usable else 0):
        c = usable[k % len(usable)]
        out.append((c, (k // len(usable)) * 23 % (len(clips.frames[c]) - frames + 1)))
    return out


# --------------------------------------------------------------------------------------------- objective
def vae_loss(face_weight: float, kl_weight: float):
    """loss_fn(model, batch, generator, step) for train_loop: face-weighted L1 + KL."""

    def loss_fn(model, batch, generator, step):
        x = batch["video"]
        recon, mean, logvar = model(x, sample=True, generator=generator)
        weight = 1.0 + face_weight * batch["face"]
        l1 = ((recon - x).abs() * weight).mean() / weight.mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        loss = l1 + kl_weight * kl
        return loss, {"l1": float(l1.detach()), "kl": float(kl.detach())}

    return loss_fn


def stage_config(cfg: Config) -> StageTrainConfig:
    v = cfg.vae
    return StageTrainConfig(steps=v.steps, batch_size=v.batch_size, lr=v.lr, warmup_steps=v.warmup_steps,
                            checkpoint_every=v.checkpoint_every, frames=v.frames, size=v.size,
                            time_limit_s=v.time_limit_s)


def build_vae(cfg: Config) -> AvatarVideoVAE:
    torch.manual_seed(cfg.seed)
    v = cfg.vae
    return AvatarVideoVAE(latent_channels=v.latent_channels, base_channels=v.base_channels,
                          spatial_downsample=v.spatial_downsample, temporal_downsample=v.temporal_downsample,
                          norm=v.norm)


@torch.no_grad()
def calibrate_scaling(vae: AvatarVideoVAE, source: WindowSource, batches: int = 8) -> float:
    """Set config.scaling_factor = 1 / std of the posterior means over training windows; returns it."""
    means = [vae.encode_moments(source.batch(10_000_000 + i)["video"])[0] for i in range(batches)]
    std = float(torch.cat([m.flatten() for m in means]).std())
    vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6))
    return vae.config.scaling_factor


# --------------------------------------------------------------------------------------------- metrics
def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    win = min(7, a.shape[0], a.shape[1])
    win -= 1 - win % 2
    return float(structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=max(win, 3)))


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(3, T, S, S) in [-1, 1] -> (T, S, S, 3) uint8."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


@torch.no_grad()
def reconstruct(vae: AvatarVideoVAE, frames: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) uint8 -> its (T', S, S, 3) uint8 reconstruction (T' = 1 + 4*((T-1)//4))."""
    return to_uint8(vae.decode(vae.encode(to_video_tensor(frames)[None]))[0])


@torch.no_grad()
def evaluate_vae(vae: AvatarVideoVAE, clips: VAEClips, frames: int, count: int) -> dict[str, float]:
    """Mean PSNR (dB) / SSIM over `count` windows, per frame, on the whole frame and on the face box."""
    vae.eval()
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "face_psnr": [], "face_ssim": []}
    for c, start in evaluation_windows(clips, frames, count):
        truth = clips.frames[c][start : start + frames]
        rec = reconstruct(vae, truth)
        truth = truth[: len(rec)]
        size = truth.shape[1]
        for t in range(len(rec)):
            scores["psnr"].append(_psnr(truth[t], rec[t]))
            scores["ssim"].append(_ssim(truth[t], rec[t]))
            x0, y0, x1, y1 = (np.clip(clips.face[c][start + t], 0, 1) * size).round().astype(int)
            if x1 - x0 >= 8 and y1 - y0 >= 8:
                scores["face_psnr"].append(_psnr(truth[t, y0:y1, x0:x1], rec[t, y0:y1, x0:x1]))
                scores["face_ssim"].append(_ssim(truth[t, y0:y1, x0:x1], rec[t, y0:y1, x0:x1]))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in scores.items()}


# --------------------------------------------------------------------------------------------- stage
def train_vae(cfg: Config, corpus_dir: str | Path, run_dir: str | Path, resume: bool = True,
              progress: bool = True) -> dict[str, Any]:
    """Train, calibrate, save_pretrained into run_dir, evaluate on held-out identities. Returns a summary dict."""
    import time

    t0 = time.time()
    run_dir = Path(run_dir)
    v = cfg.vae
    train_clips = load_vae_clips(corpus_dir, v.size, "train", v.max_clips, v.frames, progress)
    held = load_vae_clips(corpus_dir, v.size, "holdout", max(v.eval_windows, 1), v.frames, progress)
    if not len(held):  # a corpus without held-out identities: score unseen windows of training clips
        held = train_clips
    t_data = time.time() - t0
    source = WindowSource(train_clips, v.frames, v.batch_size, cfg.seed, v.color_aug)
    vae = build_vae(cfg)
    at_init = evaluate_vae(vae, held, v.frames, min(4, v.eval_windows))
    result = train_loop(vae, vae_loss(v.face_weight, v.kl_weight), source, stage_config(cfg), run_dir,
                        seed=cfg.seed, resume=resume, device=cfg.device, use_muon=False, use_ema=False,
                        progress=progress)
    t_train = time.time() - t0 - t_data
    vae = result.model.eval()
    scale = calibrate_scaling(vae, source)
    vae.save_pretrained(str(run_dir))
    metrics = evaluate_vae(vae, held, v.frames, v.eval_windows)
    summary = {
        **metrics, "psnr_at_init": at_init["psnr"], "scaling_factor": scale, "steps": result.state.step,
        "resumed_from": result.resumed_from, "train_clips": len(train_clips), "eval_clips": len(held),
        "final_loss": float(np.mean([h["loss"] for h in result.state.history[-20:]])),
        "seconds_data": t_data, "seconds_train": t_train, "seconds_total": time.time() - t0,
        "params_m": sum(p.numel() for p in vae.parameters()) / 1e6,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(args) -> int:
    """`avatarv train --stage vae [--corpus DIR] [--out DIR] [--no-resume]` (see train/cli.py)."""
    from ..config import load_config
    from ..paths import CORPUS, RUNS

    cfg = load_config(args.profile)
    torch.set_num_threads(1 if cfg.profile == "tiny" else torch.get_num_threads())  # see 02_vae notebook
    summary = train_vae(cfg, getattr(args, "corpus", None) or CORPUS, getattr(args, "out", None) or RUNS / "vae",
                        resume=not getattr(args, "no_resume", False))
    print(json.dumps(summary, indent=2))
    return 0


@torch.no_grad()
def recon_grid(vae: AvatarVideoVAE, clips: VAEClips, frames: int, rows: int = 3) -> np.ndarray:
    """An image for the notebook: per clip, a row of ground-truth frames over a row of reconstructions."""
    strips = []
    for c, start in evaluation_windows(clips, frames, min(rows, len(clips))):
        truth = clips.frames[c][start : start + frames]
        rec = reconstruct(vae, truth)
        strips += [np.concatenate(list(truth[: len(rec)]), axis=1), np.concatenate(list(rec), axis=1)]
    return np.concatenate(strips, axis=0) if strips else np.zeros((8, 8, 3), np.uint8)
