"""Motion styles: the per-frame poses show the style's parameters (so "how this person moves" is learnable)."""

from __future__ import annotations

import dataclasses

import numpy as np

from avatarv.data.motion_style import animate, draw_style


def _run(style, seconds=60.0, fps=25, seed=0):
    n = int(seconds * fps)
    stresses = np.arange(0.5, seconds, 0.6)
    poses = animate(style, np.full(n, 0.5), np.full(n, 0.5), stresses, fps, np.random.default_rng(seed))
    return {k: np.array([getattr(p, k) for p in poses]) for k in ("yaw", "pitch", "roll", "dx", "blink", "brow", "mouth_open")}


def test_style_parameters_show_in_the_motion():
    base = draw_style(np.random.default_rng(1))
    calm = dataclasses.replace(base, sway_amp=1.0, nod_amp=1.0, blink_rate=6.0, brow_rate=0.0, mouth_scale=0.7)
    lively = dataclasses.replace(base, sway_amp=8.0, nod_amp=7.0, nod_prob=0.9, blink_rate=30.0, brow_rate=0.5, mouth_scale=1.1)
    a, b = _run(calm), _run(lively)
    assert b["yaw"].std() > 3 * a["yaw"].std()
    assert b["pitch"].max() - b["pitch"].mean() > 2 * (a["pitch"].max() - a["pitch"].mean())
    blinks = lambda m: int(((m["blink"][1:] > 0.5) & (m["blink"][:-1] <= 0.5)).sum())
    assert 20 <= blinks(b) <= 40 and 2 <= blinks(a) <= 12  # ~rate per minute (Poisson)
    assert a["brow"].max() == 0 and b["brow"].max() > 0.2
    assert np.allclose(a["mouth_open"], 0.35) and np.allclose(b["mouth_open"], 0.55)


def test_poses_are_bounded_and_seeded():
    style = draw_style(np.random.default_rng(5))
    a, b = _run(style, seed=3), _run(style, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.abs(a["yaw"]).max() < 30 and np.abs(a["roll"]).max() < 20 and np.abs(a["dx"]).max() < 20
    assert 0 <= a["blink"].min() and a["blink"].max() <= 1
