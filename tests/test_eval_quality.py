"""Quality metrics: known answers under controlled distortions on a real-photo face frame (128 px, the corpus
size). Only the combinations that stage 10_eval's validation found monotone are asserted as monotone; the
others (NIQE at this size; PIQE under noise) are reported there, not hidden."""

from __future__ import annotations

import numpy as np
import pytest

from _eval_fixtures import TEXTS, speech, talking_frames
from avatarv.eval import quality


@pytest.fixture(scope="module")
def frame():
    return talking_frames(0, speech(TEXTS[0], 0.5), 0, size=128)[6]


@pytest.mark.parametrize("metric", ["piqe", "brisque"])
def test_blur_makes_quality_worse_step_by_step(frame, metric):
    vals = [quality.METRICS[metric](quality.degrade(frame, "blur", s)) for s in (0.0, 0.7, 1.4, 2.8)]
    assert all(b > a for a, b in zip(vals, vals[1:])), vals


@pytest.mark.parametrize("kind,levels", [("noise", (0, 8, 16, 32)), ("jpeg", (100, 30, 10))])
def test_brisque_worse_under_noise_and_jpeg(frame, kind, levels):
    vals = [quality.brisque(quality.degrade(frame, kind, l)) for l in levels]
    assert all(b > a for a, b in zip(vals, vals[1:])), vals


def test_piqe_worse_under_jpeg(frame):
    vals = [quality.piqe(quality.degrade(frame, "jpeg", q)) for q in (100, 30, 10)]
    assert all(b > a for a, b in zip(vals, vals[1:])), vals


def test_clip_quality_averages_frames_and_skips_qalign_without_weights(frame):
    clip = np.stack([frame, quality.degrade(frame, "blur", 2.8)])
    out = quality.clip_quality(clip, n_frames=2, metrics=("brisque",))
    assert out["brisque"] == pytest.approx(np.mean([quality.brisque(f) for f in clip]))
    assert "qalign" not in out


def test_qalign_without_weights_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="Q-Align weights"):
        quality.load_qalign("")
    # a supplied folder is where pyiqa's Q-Align reads its weights (not the hub): an empty one fails naming it
    with pytest.raises(OSError, match=str(tmp_path)):
        quality.load_qalign(str(tmp_path))


def test_small_frames_are_upscaled_before_scoring(frame):
    small = frame[::2, ::2]
    assert quality._prep(small).shape[:2] == (quality.MIN_SIDE, quality.MIN_SIDE)
    with pytest.raises(ValueError, match="unknown kind"):
        quality.degrade(frame, "warp", 1)
