"""Motion stream: landmark geometry known answers, manifest ground truth, MediaPipe extraction, style stats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from avatarv.models.motion import (
    MOTION_DIM,
    MOUTH_GAP_FULL,
    extract_motion,
    landmark_features,
    motion_from_manifest_row,
    motion_style_similarity,
    motion_style_stats,
)


def template_68(gap: float = 0.2, eye_open: float = 0.12, brow: float = 0.4) -> np.ndarray:
    """A synthetic dlib-order 68-point face in inter-ocular units (eyes at x = -0.5 / +0.5, y = 0, y down)."""
    p = np.zeros((68, 2))
    p[0:17] = np.stack([np.linspace(-1, 1, 17), 1.7 - 1.6 * (1 - np.linspace(-1, 1, 17) ** 2) ** 0.5 + 0.0], 1)
    p[0:17, 1] = 1.7 * (1 - np.linspace(-1, 1, 17) ** 2) ** 0.5
    p[17:22] = np.stack([np.linspace(-0.8, -0.2, 5), np.full(5, -brow)], 1)
    p[22:27] = np.stack([np.linspace(0.2, 0.8, 5), np.full(5, -brow)], 1)
    p[27:31] = np.stack([np.zeros(4), np.linspace(0.1, 0.6, 4)], 1)
    p[31:36] = np.stack([np.linspace(-0.2, 0.2, 5), np.full(5, 0.7)], 1)
    for start, cx in ((36, -0.5), (42, 0.5)):
        h = eye_open / 2
        p[start: start + 6] = [[cx - 0.18, 0], [cx - 0.06, -h], [cx + 0.06, -h], [cx + 0.18, 0], [cx + 0.06, h],
                               [cx - 0.06, h]]
    cy = 1.1
    p[48:60] = [[-0.45, cy], [-0.3, cy - 0.12 - gap / 2], [-0.1, cy - 0.15 - gap / 2], [0, cy - 0.14 - gap / 2],
                [0.1, cy - 0.15 - gap / 2], [0.3, cy - 0.12 - gap / 2], [0.45, cy], [0.3, cy + 0.12 + gap / 2],
                [0.1, cy + 0.15 + gap / 2], [0, cy + 0.15 + gap / 2], [-0.1, cy + 0.15 + gap / 2],
                [-0.3, cy + 0.12 + gap / 2]]
    p[60:68] = [[-0.35, cy], [-0.15, cy - gap / 2], [0, cy - gap / 2], [0.15, cy - gap / 2], [0.35, cy],
                [0.15, cy + gap / 2], [0, cy + gap / 2], [-0.15, cy + gap / 2]]
    return p


def _to_pixels(p: np.ndarray, roll_deg: float = 0.0, scale: float = 30.0, at=(64.0, 50.0)) -> np.ndarray:
    a = np.radians(roll_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return p @ rot.T * scale + np.asarray(at)


def test_landmark_features_known_answers_and_invariance():
    gaps = np.array([0.0, 0.1, 0.2, 0.3])
    lm = np.stack([_to_pixels(template_68(g), roll_deg=r, scale=s, at=(60 + s, 40))
                   for g, r, s in zip(gaps, [0, 10, -20, 5], [20, 30, 40, 25])])
    f = landmark_features(lm)
    np.testing.assert_allclose(f["mouth_open"], gaps / MOUTH_GAP_FULL, atol=1e-6)
    np.testing.assert_allclose(f["roll"], [0, 10, -20, 5], atol=1e-6)  # clockwise in the image is positive
    assert np.allclose(f["expr"][:, 4:], 0, atol=1e-6)  # symmetric face: no wink / brow / jaw asymmetry


def test_blink_detects_closed_eyes():
    eyes = [0.12] * 6 + [0.02, 0.0, 0.02] + [0.12] * 6
    lm = np.stack([_to_pixels(template_68(eye_open=e)) for e in eyes])
    blink = landmark_features(lm)["blink"]
    assert (blink[6:9] > 0.8).all() and (blink[[0, 5, 9, 14]] < 0.05).all()


def _row(n=50):
    t = np.arange(n)
    mouth = 0.5 + 0.5 * np.sin(t / 3)
    lm = [(_to_pixels(template_68(0.3 * m))).ravel().tolist() for m in mouth]
    lm[10] = []  # a frame without a face
    return {
        "head_pose": [[15 * np.sin(i / 5), -6.0, 3.0] for i in t], "head_shift": [[4.0, -2.0]] * n,
        "mouth_open": mouth.tolist(), "mouth_width": [0.4] * n, "blink": [0.0] * n, "brow": [0.5] * n,
        "landmarks": lm,
    }


def test_motion_from_manifest_row_follows_the_contract():
    row = _row()
    m = motion_from_manifest_row(row)
    assert m.shape == (50, MOTION_DIM) and m.dtype == np.float32 and np.isfinite(m).all()
    np.testing.assert_allclose(m[:, 0], 15 * np.sin(np.arange(50) / 5) / 30, atol=1e-6)
    np.testing.assert_allclose(m[:, 1:3], [[-0.2, 0.1]] * 50, atol=1e-6)
    np.testing.assert_allclose(m[:, 3:5], [[0.2, -0.1]] * 50, atol=1e-6)
    np.testing.assert_allclose(m[:, 5], row["mouth_open"], atol=1e-6)
    np.testing.assert_allclose(m[:, 6:9], [[0.4, 0.0, 0.5]] * 50, atol=1e-6)
    assert np.abs(m[:, 9:]).max() > 0  # expression coefficients move with the mouth (jaw drop)


@pytest.fixture(scope="module")
def astronaut_clip():
    """A real face (skimage's astronaut) rolled by a known angle and shifted by known pixels over 25 frames."""
    import cv2
    import skimage.data

    from avatarv.models.motion import MP_TO_68, face_mesh_landmarks

    img = cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    mesh, _ = face_mesh_landmarks(np.stack([cv2.resize(img, (256, 256), interpolation=cv2.INTER_CUBIC)]))
    nose = mesh[0, MP_TO_68[27:36], :2].mean(0) / 2  # rotate about the nose so the shift is exactly dx
    roll = 10 * np.sin(2 * np.pi * np.arange(25) / 25)
    dx = 5 * np.cos(2 * np.pi * np.arange(25) / 25)
    frames = []
    for r, x in zip(roll, dx):
        m = cv2.getRotationMatrix2D((float(nose[0]), float(nose[1])), -r, 1.0)  # cv2 angles are counter-clockwise; ours clockwise
        m[0, 2] += x
        frames.append(cv2.warpAffine(img, m, (128, 128), borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames), roll, dx


def test_extract_motion_recovers_roll_and_shift(astronaut_clip):
    frames, roll, dx = astronaut_clip
    m = extract_motion(frames)
    assert m.shape == (25, MOTION_DIM) and np.isfinite(m).all()
    est_roll = m[:, 2] * 30
    assert np.corrcoef(est_roll, roll)[0, 1] > 0.95
    assert np.abs((est_roll - est_roll.mean()) - (roll - roll.mean())).max() < 3.0
    assert np.corrcoef(m[:, 3] * 20, dx)[0, 1] > 0.95
    assert np.abs(m[:, 0]).max() * 30 < 10  # no yaw was applied


def test_extract_motion_without_a_face_is_zero():
    frames = np.full((4, 64, 64, 3), 127, np.uint8)
    assert np.array_equal(extract_motion(frames), np.zeros((4, MOTION_DIM), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        extract_motion(frames.astype(np.float32))


def _synthetic_motion(sway_hz=0.5, blinks=(20, 60, 90), seconds=4.0, fps=25, mouth=0.6):
    t = np.arange(int(seconds * fps)) / fps
    m = np.zeros((len(t), MOTION_DIM), np.float32)
    m[:, 0] = 10 * np.sin(2 * np.pi * sway_hz * t) / 30
    m[:, 1] = 4 * np.sin(2 * np.pi * 1.0 * t) / 30  # one nod per second
    m[:, 5] = mouth * np.abs(np.sin(2 * np.pi * 3 * t))
    for b in blinks:
        m[b: b + 3, 7] = 1.0
    return m


def test_motion_style_stats_known_answers():
    s = motion_style_stats(_synthetic_motion())
    assert s["sway_freq"] == pytest.approx(0.5, abs=0.13)
    assert s["blink_rate"] == pytest.approx(3 / 4 * 60)
    assert s["nod_rate"] == pytest.approx(1.0, abs=0.26)
    assert s["mouth_scale"] == pytest.approx(0.6, abs=0.02)


def test_motion_style_similarity_orders_people():
    a = motion_style_stats(_synthetic_motion())
    a2 = motion_style_stats(_synthetic_motion(blinks=(10, 50, 95)))
    b = motion_style_stats(_synthetic_motion(sway_hz=1.5, blinks=(50,), mouth=0.2) * 0.5)
    assert motion_style_similarity(a, a) == pytest.approx(1.0)
    assert 0.0 <= motion_style_similarity(a, b) < motion_style_similarity(a, a2) <= 1.0


@pytest.mark.slow
def test_extract_motion_matches_corpus_ground_truth(tmp_path):
    """Clips rendered by the corpus engine: MediaPipe mouth opening follows the true one (mean corr > 0.8 over
    three identities) and true blinks are found (most events, few extra)."""
    from avatarv.data.synthesize import CorpusSpec, synthesize_corpus
    from avatarv.media import read_video

    spec = CorpusSpec(identities=3, scenes=1, clips_per_scene=1, seconds=4.0, size=128, seed=1234,
                      distractor_fraction=0.0, holdout_identities=0)
    synthesize_corpus(tmp_path, spec, workers=1, progress=False)
    man = pd.read_parquet(tmp_path / "manifest.parquet")
    corrs, events, found, extra = [], 0, 0, 0
    for _, row in man.iterrows():
        truth = motion_from_manifest_row(row)
        est = extract_motion(read_video(tmp_path / row["path"]).frames)
        corrs.append(np.corrcoef(truth[:, 5], est[:, 5])[0, 1])
        closed, closed_est = truth[:, 7] > 0.5, est[:, 7] > 0.5
        onsets = [i for i in range(len(closed)) if closed[i] and (i == 0 or not closed[i - 1])]
        events += len(onsets)
        found += sum(bool(closed_est[max(0, i - 1): i + 4].any()) for i in onsets)
        est_onsets = [i for i in range(len(closed_est)) if closed_est[i] and (i == 0 or not closed_est[i - 1])]
        extra += sum(not closed[max(0, i - 2): i + 3].any() for i in est_onsets)
    assert np.mean(corrs) > 0.8, corrs
    assert events > 0 and found >= events / 2 and extra <= events
