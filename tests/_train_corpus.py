"""A miniature corpus in the shared manifest layout for the training tests: coloured 'faces' (one colour per
identity) on per-scene backgrounds, with a mouth whose opening follows the audio's loudness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def make_corpus(root: Path, identities: int = 3, scenes: int = 2, frames: int = 17, size: int = 64,
                holdout: int = 1, sr: int = 16000, fps: int = 25) -> Path:
    from avatarv.media import write_video

    rows = []
    (root / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(identities):
        ident = f"id{i:03d}"
        face_col = np.array([60 + 60 * i, 200 - 50 * i, 120], np.uint8)
        for s in range(scenes):
            bg = np.array([30 + 90 * s, 40, 200 - 80 * s], np.uint8)
            clip_id = f"{ident}_s{s}_c0"
            n_audio = int(frames / fps * sr)
            env = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + i) * np.arange(frames) / fps + s)
            t = np.arange(n_audio) / sr
            audio = (0.3 * np.repeat(env, n_audio // frames + 1)[:n_audio] * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
            vid = np.empty((frames, size, size, 3), np.uint8)
            boxes, lms = [], []
            for f in range(frames):
                cx, cy, r = size / 2 + 2 * np.sin(f / 3 + i), size / 2, size * 0.3
                img = np.broadcast_to(bg, (size, size, 3)).copy()
                img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = face_col
                mo = env[f]
                img[(np.abs(xx - cx) < r * 0.4) & (np.abs(yy - (cy + r * 0.45)) < 1 + 4 * mo)] = 20
                vid[f] = img
                boxes.append([cx - r, cy - r, cx + r, cy + r])
                pts = np.stack([np.full(68, cx) + rng.normal(0, r / 3, 68), np.full(68, cy) + rng.normal(0, r / 3, 68)], 1)
                ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
                pts[48:68] = np.stack([cx + 0.4 * r * np.cos(ang), cy + 0.45 * r + (1 + 4 * mo) * np.sin(ang)], 1)
                lms.append(pts.reshape(-1).tolist())
            write_video(root / "clips" / f"{clip_id}.mp4", vid, fps, audio, sr)
            rows.append({
                "clip_id": clip_id, "path": f"clips/{clip_id}.mp4", "identity": ident,
                "identity_source": "procedural", "scene": s, "scene_key": f"{ident}_s{s}",
                "split": "holdout" if i >= identities - holdout else "train", "voice": "en-us", "pitch": 50,
                "speed": 150, "language": "en-us", "text": "hello", "phonemes": "[]", "fps": fps, "width": size,
                "height": size, "n_frames": frames, "duration": frames / fps, "sample_rate": sr,
                "face_box": boxes, "landmarks": lms, "head_pose": [[0.0, 0.0, 0.0]] * frames,
                "head_shift": [[float(2 * np.sin(f / 3 + i)), 0.0] for f in range(frames)],
                "mouth_open": env.tolist(), "mouth_width": [0.5] * frames, "blink": [0.0] * frames,
                "brow": [0.0] * frames, "audio_energy": env.tolist(),
                "motion_style": json.dumps({"sway_amp": 2.0, "blink_rate": 0.2}), "distractor": "",
                "av_offset_frames": 0, "flags": "{}",
            })
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet")
    return root


def tiny_vae():
    import torch

    from avatarv.models.vae import AvatarVideoVAE

    torch.manual_seed(0)
    return AvatarVideoVAE(latent_channels=8, base_channels=8, spatial_downsample=4, temporal_downsample=4).eval()
