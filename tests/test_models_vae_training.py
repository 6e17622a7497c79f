"""Stage 02_vae on a miniature corpus: it learns, calibrates the latent scale, saves, resumes and scores faces."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from avatarv.models.vae import load_vae
from avatarv.train.vae import WindowSource, face_mask, load_vae_clips, train_vae


def _make_corpus(root, size=32, frames=13):
    """Three identities (two train, one held out): a shaded disc 'face' drifting over a gradient background."""
    from avatarv.media import write_video

    (root / "clips").mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rows = []
    for i, split in enumerate(["train", "train", "holdout"]):
        clip_id = f"id00{i}_s0_c0"
        video, boxes = [], []
        for t in range(frames):
            cx, cy, r = size * (0.45 + 0.01 * t), size * 0.5, size * 0.25
            img = np.stack([xx / size * 200, yy / size * 150 + 40 * i, np.full_like(xx, 90)], -1)
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            img[inside] = [200 - 40 * i, 160, 120 + 30 * i]
            img[inside & (np.abs(yy - cy - r / 2) < 1 + (t % 4))] = 30  # a mouth that opens and closes
            video.append(img.astype(np.uint8))
            boxes.append([cx - r, cy - r, cx + r, cy + r])
        write_video(root / "clips" / f"{clip_id}.mp4", np.stack(video), 25)
        rows.append({"clip_id": clip_id, "path": f"clips/{clip_id}.mp4", "split": split, "distractor": "",
                     "face_box": boxes})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _make_corpus(tmp_path_factory.mktemp("vae_corpus"))


def _cfg(tiny_cfg, steps):
    vae = dataclasses.replace(tiny_cfg.vae, base_channels=8, latent_channels=4, size=32, steps=steps, batch_size=2,
                              frames=5, lr=3e-3, warmup_steps=2, checkpoint_every=10, eval_windows=4,
                              norm="group", color_aug=False)  # fastest learner at this toy size
    return dataclasses.replace(tiny_cfg, vae=vae, device="cpu")


def test_face_mask_and_windows(corpus):
    clips = load_vae_clips(corpus, 32, "train", progress=False)
    assert len(clips) == 2 and clips.frames[0].shape == (13, 32, 32, 3)
    mask = face_mask(np.array([[0.25, 0.5, 0.75, 1.0]]), 8)
    assert mask.shape == (1, 1, 8, 8) and mask.sum() == 4 * 4
    src = WindowSource(clips, 5, 3, seed=7)
    a, b = src.batch(4), src.batch(4)
    assert a["video"].shape == (3, 3, 5, 32, 32) and a["face"].shape == (3, 1, 5, 32, 32)
    assert torch.equal(a["video"], b["video"])  # a pure function of (seed, index)
    assert not torch.equal(a["video"], src.batch(5)["video"])
    aug = WindowSource(clips, 5, 3, seed=7, color_aug=True)
    # the first window of a batch is drawn before any augmentation draw: same window, maybe permuted channels
    plain = torch.stack([src.batch(i)["video"][0] for i in range(8)])
    permuted = torch.stack([aug.batch(i)["video"][0] for i in range(8)])
    assert not torch.equal(plain, permuted)
    assert torch.allclose(plain.sort(dim=1).values, permuted.sort(dim=1).values)


def test_train_vae_learns_calibrates_saves_and_resumes(corpus, tmp_path, tiny_cfg):
    run = tmp_path / "vae"
    first = train_vae(_cfg(tiny_cfg, 20), corpus, run, progress=False)
    assert (run / "checkpoints").is_dir() and (run / "config.json").exists()
    summary = train_vae(_cfg(tiny_cfg, 40), corpus, run, progress=False)  # continues from step 20
    assert summary["resumed_from"] == 20 and summary["steps"] == 40
    assert summary["psnr"] > summary["psnr_at_init"] + 3.0
    assert summary["face_psnr"] > 0 and 0 < summary["ssim"] <= 1
    assert first["eval_clips"] == 1  # scored on the held-out identity only
    vae = load_vae(run)
    assert json.loads((run / "summary.json").read_text())["scaling_factor"] == pytest.approx(
        vae.config.scaling_factor)
    clips = load_vae_clips(corpus, 32, "train", progress=False)
    with torch.no_grad():
        z = torch.cat([vae.encode(WindowSource(clips, 5, 4, seed=1).batch(i)["video"]) for i in range(3)])
    assert 0.7 < float(z.std()) < 1.4  # latents have ~unit std after calibration
