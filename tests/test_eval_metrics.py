"""Mouth, motion-dynamics and drift metrics on known answers (fixtures: real photos, espeak-ng speech)."""

from __future__ import annotations

import numpy as np
import pytest
from _eval_fixtures import TEXTS, speech, talking_frames

from avatarv.eval import quality
from avatarv.eval.drift import drift_metrics
from avatarv.eval.motion_dynamics import motion_stats, style_similarity
from avatarv.eval.mouth import lagged_corr, mouth_metrics, mouth_sharpness, teeth_fraction
from avatarv.faces import track_face, track_landmarks


@pytest.fixture(scope="module")
def talking():
    a = speech(TEXTS[4], 2.0)
    f = talking_frames(0, a, 0, size=128)
    tr = track_face(f)
    return f, a, tr, track_landmarks(f, tr)


def test_lagged_corr_finds_a_known_lag():
    x = np.sin(np.linspace(0, 12, 80)) + np.random.default_rng(0).normal(0, 0.01, 80)
    r, lag = lagged_corr(x[2:], x[:-2], max_lag=3)  # y[t + 2] = x[t]... so y lags x by -2
    r2, lag2 = lagged_corr(x[:-2], x[2:], max_lag=3)
    assert r > 0.99 and r2 > 0.99 and lag == -lag2 and abs(lag) == 2


def test_lip_audio_correlation_drops_for_other_audio(talking):
    f, a, _, lms = talking
    synced = mouth_metrics(f, a, 16000, lms)["lip_audio_corr"]
    other = mouth_metrics(f, speech(TEXTS[1], 2.0), 16000, lms)["lip_audio_corr"]
    assert synced > 0.5 and synced > other + 0.3


def test_mouth_sharpness_falls_under_blur_and_teeth_are_told_from_a_dark_mouth(talking):
    f, _, _, lms = talking
    idx = np.arange(0, len(f), 5)
    blurred = np.stack([quality.degrade(x, "blur", 1.5) for x in f])
    assert mouth_sharpness(blurred, lms[idx], idx) < 0.7 * mouth_sharpness(f, lms[idx], idx)
    # paint the inner-lip polygon of the widest-open frame white (teeth) or dark red (mouth cavity)
    import cv2

    i = int(np.argmax([np.linalg.norm(p[62] - p[66]) for p in lms]))
    poly = lms[i][60:68].round().astype(np.int32)
    teeth, cavity = f[i].copy(), f[i].copy()
    cv2.fillPoly(teeth, [poly], (240, 240, 235))
    cv2.fillPoly(cavity, [poly], (60, 15, 20))
    assert teeth_fraction(teeth, lms[i]) > 0.5 and teeth_fraction(cavity, lms[i]) < 0.05


def test_motion_energy_zero_when_still_and_style_similarity_is_one_with_itself(talking):
    f, _, _, lms = talking
    still = np.repeat(f[:1], 30, 0)
    still_lms = track_landmarks(still, track_face(still))
    s_move, s_still = motion_stats(lms), motion_stats(still_lms)
    assert s_still["energy"] == pytest.approx(0.0, abs=1e-6) and s_move["energy"] > 0.05
    assert style_similarity(s_move, s_move) == pytest.approx(1.0)
    assert style_similarity(s_move, s_still) < 0.6


def test_drift_sees_a_colour_shift_and_not_a_steady_clip(talking):
    f, _, tr, _ = talking
    steady = drift_metrics(f, tr, chunk_seconds=1.0)
    assert steady["chunks"] == 2 and steady["drift_delta_e_max"] < 1.5 and steady["drift_id_sim_min"] > 0.95
    tinted = f.copy()
    tinted[25:] = np.clip(tinted[25:].astype(np.float32) * [1.15, 0.95, 0.85], 0, 255).astype(np.uint8)
    shifted = drift_metrics(tinted, tr, chunk_seconds=1.0)
    assert shifted["drift_delta_e_max"] > steady["drift_delta_e_max"] + 3
    assert shifted["drift_delta_e_per_min"] > 0
