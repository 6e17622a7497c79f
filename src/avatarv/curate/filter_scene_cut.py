"""Cascade step 2 (seed: shot segmentation): scene-cut detection with PySceneDetect's ContentDetector.

A clip must be one continuous shot to serve as a reference or target. The per-frame HSV content score is
measured on every frame; a cut is a score above `scene_cut_threshold`. The clip is then split: the shot
segments (frame ranges) are recorded so a later pass can cut them into clips of their own.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from .checks import Check, fail, ok

NAME = "scene_cut"


def shot_scores(frames: np.ndarray) -> np.ndarray:
    """ContentDetector's score between each frame and the previous one (0 for the first frame)."""
    from scenedetect.detectors import ContentDetector

    det = ContentDetector(threshold=1e9, min_scene_len=1)  # threshold applied by us, scores only
    scores = np.zeros(len(frames), np.float32)
    for t, f in enumerate(frames):
        det.process_frame(t, np.ascontiguousarray(f[..., ::-1]))  # scenedetect works on BGR
        scores[t] = float(getattr(det, "_frame_score", 0.0) or 0.0)
    return scores


def segments(cuts: list[int], n_frames: int) -> list[list[int]]:
    """[start, end) frame ranges of the shots between cuts."""
    edges = [0, *cuts, n_frames]
    return [[a, b] for a, b in pairwise(edges) if b > a]


def find_cuts(scores: np.ndarray, threshold: float, min_len: int) -> list[int]:
    cuts: list[int] = []
    for t in np.flatnonzero(scores >= threshold):
        if t >= min_len and (not cuts or t - cuts[-1] >= min_len) and len(scores) - t >= 1:
            cuts.append(int(t))
    return cuts


def check(ctx) -> Check:
    c = ctx.cfg
    scores = shot_scores(ctx.frames)
    cuts = find_cuts(scores, c.scene_cut_threshold, c.min_scene_len_frames)
    ctx.cache["segments"] = segments(cuts, len(scores))
    v = dict(scene_cut_score=float(scores.max(initial=0.0)), n_scene_cuts=float(len(cuts)))
    if cuts:
        return fail(NAME, f"scene cut at frame {cuts[0]} (score {scores[cuts[0]]:.1f} >= {c.scene_cut_threshold})", **v)
    return ok(NAME, **v)
