"""Shared fixtures: deterministic CPU torch, tmp media files, and the project's tiny config."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_cfg():
    from avatarv.config import load_config

    return load_config("tiny")


@pytest.fixture
def tone_clip(tmp_path):
    """A 1 s, 64×64 clip with a moving square and a 440 Hz tone: a valid H.264 + AAC mp4."""
    from avatarv.media import write_video

    t = np.arange(25)
    frames = np.zeros((25, 64, 64, 3), np.uint8)
    for i in t:
        frames[i, 20:40, 10 + i : 30 + i] = 200
    audio = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    path = tmp_path / "tone.mp4"
    write_video(path, frames, 25, audio, 16000)
    return path, frames, audio
