"""Training of the audio-visual sync expert (models/sync_expert.py) on the corpus' clean clips.

`train_sync_expert` is the loop: multi-way matching, where the true alignment must be more similar than the same
clip's audio shifted by ±1..K frames and than other clips' aligned audio (SyncNet's contrastive objective, with
the other batch clips as extra negatives). `train_expert` reads the training split and saves the model. Stage
10_eval trains the judge that scores every system; stage 04_a2v trains, with other seeds, the frozen expert behind
the lip-sync loss and the stages' own grader (train/stage.load_sync_judge).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..faces import track_face
from ..media import read_video
from ..models.sync_expert import CROP, WINDOW, SyncExpert, SyncInputs, mel_segment, prepare, visual_windows

MARGIN = 2  # extra video frames of audio context either side, so training windows see no conv padding


def clean_clips(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest's clips of `split` without a distractor, sorted by clip id."""
    m = manifest[(manifest["split"] == split) & (manifest["distractor"].fillna("") == "")]
    return m.sort_values("clip_id")


def spread_over_identities(rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """k rows spread over identities: round-robin by identity, so a small k still sees many people."""
    rows = rows.assign(_rank=rows.groupby("identity").cumcount()).sort_values(["_rank", "clip_id"])
    return rows.head(k).drop(columns="_rank")


def eval_judge_clips(cfg, manifest: pd.DataFrame) -> pd.DataFrame:
    """The clips the evaluation's sync experts train on: `cfg.eval.sync_expert_clips` clean training clips, spread
    over identities."""
    return spread_over_identities(clean_clips(manifest, "train"), cfg.eval.sync_expert_clips)


def load_tracked_clip(corpus: Path, row) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(frames, audio, sample rate, per-frame face boxes) of one manifest row."""
    v = read_video(corpus / row["path"], need_audio=True)
    return v.frames, v.audio, v.sample_rate, track_face(v.frames).boxes


def train_sync_expert(clips: list[SyncInputs], steps: int = 300, batch_size: int = 32, max_shift: int = 6,
                      lr: float = 2e-3, seed: int = 0, progress: bool = True,
                      architecture: dict | None = None) -> tuple[SyncExpert, list[float]]:
    """Multi-way matching: for each sampled video window the aligned audio window must beat the same clip's
    audio at offsets ±1..max_shift and the other batch clips' aligned audio (cross-entropy over cosines/τ).
    `architecture`: SyncExpert config overrides (channels, embed_dim) for a judge unlike the default one."""
    need = WINDOW + 2 * (max_shift + MARGIN) + 1
    clips = [c for c in clips if c.n_frames >= need]
    if not clips:
        raise ValueError(f"train_sync_expert: no clip has {need}+ frames")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SyncExpert(**(architecture or {}))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    n_shift = 2 * max_shift + 1
    seg = n_shift + WINDOW - 1 + 2 * MARGIN  # video frames of audio per sample
    tau = model.config.temperature
    history = []
    from tqdm.auto import tqdm

    model.train()
    for _ in tqdm(range(steps), desc="sync expert", disable=not progress, mininterval=5):
        ci = rng.integers(len(clips), size=batch_size)
        vis, aud = [], []
        for c in ci:
            clip = clips[c]
            t = int(rng.integers(max_shift + MARGIN, clip.n_frames - WINDOW - max_shift - MARGIN + 1))
            v = visual_windows(clip, np.array([t]))
            if rng.random() < 0.5:  # mirror: mouths are left-right symmetric, doubles the visual data
                v = v.flip(-1)
            vis.append(v)
            aud.append(mel_segment(clip, t - max_shift - MARGIN, seg))
        v = model.embed_visual(torch.cat(vis) + 0.05 * torch.randn(batch_size, WINDOW, CROP[1], CROP[0]))
        a = model.embed_audio(torch.cat(aud))[:, MARGIN : MARGIN + n_shift]  # (B, n_shift, D)
        own = torch.einsum("bd,bkd->bk", v, a)  # same clip, every offset
        cross = v @ a[:, max_shift].T  # aligned audio of every batch clip
        same = torch.from_numpy(ci[:, None] == ci[None])
        other = cross.masked_fill(same, -1e4)
        logits = torch.cat([own, other], 1) / tau
        loss = F.cross_entropy(logits, torch.full((batch_size,), max_shift, dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
    model.eval()
    return model, history


def train_expert(cfg, corpus: Path, manifest: pd.DataFrame, out: Path, progress: bool = True,
                 seed: int | None = None, rows: pd.DataFrame | None = None, steps: int | None = None,
                 architecture: dict | None = None) -> dict:
    """Train on `cfg.eval.sync_expert_clips` clean training clips (spread over identities; `rows` picks other clips)
    and save to `out`; returns the run's summary (clip count, loss at start and end, timings, loss curve)."""
    torch.set_num_threads(1)  # small convs: one thread is as fast on 2 cores and stays fast when they are shared
    t0 = time.time()
    if rows is None:
        rows = eval_judge_clips(cfg, manifest)
    clips = []
    for _, r in rows.iterrows():
        frames, audio, sr, boxes = load_tracked_clip(corpus, r)
        clips.append(prepare(frames, audio, sr, boxes))
    t1 = time.time()
    model, hist = train_sync_expert(clips, steps=steps or cfg.eval.sync_expert_steps,
                                    batch_size=cfg.eval.sync_expert_batch, max_shift=cfg.eval.sync_expert_max_shift,
                                    seed=cfg.seed if seed is None else seed, progress=progress,
                                    architecture=architecture)
    model.save_pretrained(str(out))
    return {"path": str(out), "train_clips": len(clips), "steps": len(hist), "loss_first": float(np.mean(hist[:10])),
            "loss_last": float(np.mean(hist[-10:])), "prep_s": t1 - t0, "train_s": time.time() - t1,
            "loss_curve": [float(x) for x in hist]}

