"""Evaluation of footage at any frame rate and audio format: the same talking content rendered at 25 fps (16 kHz mono)
and at 29.97 fps (48 kHz stereo) scores alike on every metric, within the stated tolerances; audio shifted by 3
frames still lowers lip sync at 29.97 fps; `avatarv eval` scores a 29.97 fps camera clip with every metric. The
sync expert is trained once per module on the real-photo talking fixtures (~20 s, as in test_eval_sync.py)."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from _eval_fixtures import TEXTS, small_sync_expert, speech, talking_frames
from _media_fixtures import write_clip

from avatarv.media import resample

NTSC = Fraction(30000, 1001)
SECONDS = 3.003  # a whole number of frames at both rates: 75 at 25 fps, 90 at 29.97 fps
# |score at 29.97 fps − score at 25 fps| allowed per metric: ("abs", d) or ("rel", fraction of the 25 fps score).
# Measured on two held-out identities (max difference in brackets); the same content rendered at another rate
# changes which instants the frames show (≤ 20 ms apart) and the mouth opening each frame was drawn with.
TOLERANCES = {
    "sync_conf": ("abs", 0.15),  # [0.067]
    "sync_conf_at_zero": ("abs", 0.15),  # [0.067]
    "sync_lse_c": ("abs", 0.15),  # [0.067]
    "sync_lse_d": ("abs", 0.10),  # [0.051]
    "sync_offset": ("abs", 1),  # [0]
    "sync_abs_offset": ("abs", 1),  # [0]
    "face_sim": ("abs", 0.01),  # [0.001]
    "face_sim_frame_mean": ("abs", 0.01),  # [0.001]
    "face_sim_frame_min": ("abs", 0.02),  # [0.008]
    "piqe": ("abs", 8.0),  # [4.2 of 0-100]
    "niqe": ("rel", 0.15),  # [12 %]
    "brisque": ("abs", 4.0),  # [1.5 of 0-100]
    "mouth_sharpness": ("rel", 0.25),  # [11 %]
    "teeth_visibility": ("abs", 0.25),  # [0.125: one of the 8 sampled frames]
    "lip_audio_corr": ("abs", 0.10),  # [0.057]
    "lip_audio_lag": ("abs", 1),  # [0]
    "mouth_open_mean": ("abs", 0.03),  # [0.011]
    "mouth_open_std": ("abs", 0.01),  # [0.003]
    "head_motion_energy": ("rel", 0.10),  # [2.5 %]
    "motion_style_sim": ("abs", 0.08),  # [0.038]
    "motion_stream_style_sim": ("abs", 0.05),  # [0.007]
    "chunks": ("abs", 0),  # [0]
    "drift_id_sim_min": ("abs", 0.01),  # [0.001]
    "drift_delta_e_max": ("abs", 0.5),  # [0.25 ΔE2000; < 1 is invisible]
    "drift_id_sim_per_min": ("abs", 0.1),  # [0.04]
    "drift_delta_e_per_min": ("abs", 15.0),  # [10.2: a slope over 3 s extrapolated to a minute]
    "n_frames": ("abs", 0), "duration": ("abs", 1e-6), "face_found": ("abs", 0), "face_detected_frac": ("abs", 0),
}


@pytest.fixture(scope="module")
def expert_dir(tmp_path_factory):
    model, _ = small_sync_expert()
    d = tmp_path_factory.mktemp("expert") / "sync_expert"
    model.save_pretrained(d)
    return d


def _clip(path, identity: int, text: int, scene: int, fps, sample_rate: int | None, channels: int = 1,
          shift_s: float = 0.0):
    """Package face `identity` saying TEXTS[text] at `fps`, its audio (delayed by `shift_s`) at `sample_rate`."""
    a = speech(TEXTS[text], SECONDS)
    frames = talking_frames(identity, a, scene, fps=fps)
    if shift_s:
        k = int(round(shift_s * 16000))
        a = np.concatenate([np.zeros(k, np.float32), a[:-k]])
    audio = np.stack([resample(a, 16000, sample_rate)] * channels) if sample_rate else None
    return write_clip(path, fps=fps, frames=frames, size=(96, 96), sample_rate=sample_rate, channels=channels,
                      audio=audio)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("rates")
    return {
        "ref": _clip(d / "ref" / "talk.mp4", 5, 1, 1, 25, None),  # a reference video without audio
        "25": _clip(d / "gen25" / "talk.mp4", 5, 3, 0, 25, 16000),
        "29.97": _clip(d / "gen2997" / "talk.mp4", 5, 3, 0, NTSC, 48000, 2),
        "29.97 shifted": _clip(d / "shift" / "talk.mp4", 5, 3, 0, NTSC, 48000, 2, shift_s=3 * 1001 / 30000),
    }


@pytest.fixture(scope="module")
def scores(expert_dir, clips):
    from avatarv.eval.runner import EvalSettings, Scorer

    scorer = Scorer(EvalSettings(sync_expert=str(expert_dir)))
    return {k: scorer.score(p, clips["ref"]) for k, p in clips.items() if k != "ref"}


def test_every_metric_agrees_at_25_and_2997_fps(scores):
    a, b = scores["25"], scores["29.97"]
    numeric = {k for k, v in a.items() if isinstance(v, (int, float))}
    assert numeric == set(TOLERANCES), "every metric needs a stated tolerance"
    off = {}
    for k, (kind, tol) in TOLERANCES.items():
        assert math.isfinite(a[k]) and math.isfinite(b[k]), k
        allowed = tol * abs(a[k]) if kind == "rel" else tol
        if abs(a[k] - b[k]) > allowed + 1e-9:
            off[k] = (a[k], b[k], allowed)
    assert not off, off


def test_shifted_audio_still_lowers_sync_at_2997_fps(scores):
    synced, shifted = scores["29.97"], scores["29.97 shifted"]
    assert synced["sync_offset"] == 0 and shifted["sync_offset"] >= 2  # 100 ms late = 2.5 frames at 25 fps
    assert shifted["sync_conf"] < synced["sync_conf"] - 0.1
    assert shifted["sync_conf_at_zero"] < synced["sync_conf_at_zero"]


def test_eval_cli_scores_a_2997_fps_camera_clip_with_every_metric(expert_dir, clips, tmp_path, capsys):
    from avatarv.cli import main
    from avatarv.eval.runner import HIGHER_IS_BETTER

    out = tmp_path / "m.json"
    assert main(["eval", "--generated", str(clips["29.97"].parent), "--reference", str(clips["ref"].parent),
                 "--out", str(out), "--sync-expert", str(expert_dir), "--no-progress"]) == 0
    assert "1 of 1 clips scored" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    row = doc["clips"][0]
    assert doc["aggregate"]["n_scored"] == 1 and not row.get("error")
    # all but the user-weight backends (SyncNet, whose LSE-D goes with LSE-C; Q-Align) and face_sim_other (needs a
    # second identity in the run)
    skipped = {"face_sim_other"} | ({"syncnet_lse_d"} if doc["backends"]["syncnet_lse_c"].startswith("n/a") else set())
    measured = {k for k in HIGHER_IS_BETTER if not doc["backends"].get(k, "").startswith("n/a")} - skipped
    assert {"sync_conf", "face_sim", "piqe", "lip_audio_corr", "motion_stream_style_sim"} <= measured
    assert all(k in row and math.isfinite(row[k]) for k in measured), sorted(measured - set(row))
    assert row["n_frames"] == 75
