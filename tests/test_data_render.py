"""Renderer geometry: the warp, the expression controls and the ground-truth box (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from avatarv.data import render as R
from avatarv.data.portraits import TEX, mean_landmarks


@pytest.fixture(scope="module")
def lm0():
    return R.close_mouth(mean_landmarks())


def test_warp_with_unmoved_mesh_is_the_identity():
    rng = np.random.default_rng(0)
    tex = np.concatenate([rng.uniform(0, 255, (TEX, TEX, 3)), np.ones((TEX, TEX, 1))], 2).astype(np.float32)
    tex[..., :3] = np.clip(np.cumsum(tex[..., :3], 1) / np.arange(1, TEX + 1)[None, :, None], 0, 255)  # smooth it
    pts = np.concatenate([R.close_mouth(mean_landmarks()), R.anchor_ring()]).astype(np.float64)
    pts[60:68] = mean_landmarks()[60:68]
    out = R.warp(tex, pts, pts, TEX)
    covered = out[..., 3] > 0.999
    assert covered.mean() > 0.9
    assert np.abs(out[covered][:, :3] - tex[covered][:, :3]).max() < 1e-2


def test_warp_follows_a_translation():
    tex = np.zeros((TEX, TEX, 4), np.float32)
    tex[100:110, 120:130] = (255, 0, 0, 1)
    src = np.concatenate([mean_landmarks(), R.anchor_ring()]).astype(np.float64)
    out = R.warp(tex, src, src + [7, -5], TEX)
    ys, xs = np.nonzero(out[..., 0] > 128)
    assert abs(xs.mean() - 131.5) < 0.6 and abs(ys.mean() - 99.5) < 0.6


def test_expression_controls(lm0):
    gap = lambda lm: lm[66, 1] - lm[62, 1]
    assert abs(gap(R.express(lm0, R.Pose()))) < 1e-6
    g1, g2 = gap(R.express(lm0, R.Pose(mouth_open=0.5))), gap(R.express(lm0, R.Pose(mouth_open=1.0)))
    assert 0 < g1 < g2 and abs(g2 - 2 * g1) < 1e-6  # opening is linear in mouth_open
    width = lambda lm: lm[54, 0] - lm[48, 0]
    assert width(R.express(lm0, R.Pose(mouth_width=1.0))) > width(lm0) > width(R.express(lm0, R.Pose(mouth_width=0.0)))
    eye = lambda lm: lm[41, 1] - lm[37, 1]
    assert eye(R.express(lm0, R.Pose(blink=1.0))) < 0.1 * eye(lm0)
    assert R.express(lm0, R.Pose(brow=1.0))[17:27, 1].mean() < lm0[17:27, 1].mean() - 3


def test_mesh_has_a_hole_exactly_at_the_mouth():
    tri = R.triangles()
    assert not any(set(t) <= set(range(60, 68)) for t in tri.tolist())
    assert tri.max() == 68 + R.N_ANCHORS - 1


def test_pose_moves_landmarks_as_told(lm0):
    look = R.Look(face_width=0.6, centre=(0.5, 0.4), light_dir=(0, -1), light_rgb=(1, 1, 1), ambient=0.5,
                  clothing_rgb=(0, 0, 255), collar=0)
    base = R.place(lm0, lm0, R.Pose(), look, 256)
    assert abs((base[16, 0] - base[0, 0]) - 0.6 * 256) < 1e-3  # framing: jaw width = face_width of the frame
    shifted = R.place(lm0, lm0, R.Pose(dx=10, dy=-4), look, 256)
    assert np.allclose(shifted - base, [20, -8], atol=1e-4)  # shifts are in 128-px units
    turned = R.place(lm0, lm0, R.Pose(yaw=15), look, 256)
    assert turned[30, 0] > base[30, 0] + 5  # the nose moves towards the turn
    rolled = R.place(lm0, lm0, R.Pose(roll=10), look, 256)
    a = np.degrees(np.arctan2(*(rolled[45] - rolled[36])[::-1])) - np.degrees(np.arctan2(*(base[45] - base[36])[::-1]))
    assert abs(a - 10) < 1e-3


def test_face_box_contains_the_landmarks(lm0):
    b = R.face_box(lm0)
    assert b[0] <= lm0[:, 0].min() + 0.01 and b[2] >= lm0[:, 0].max() - 0.01  # rounded to 0.01 px
    assert b[1] < lm0[:, 1].min() and b[3] >= lm0[:, 1].max() - 0.01
