"""68-point facial landmarks (dlib's shape predictor from face_recognition_models, real offline weights) and
the mouth-opening signal derived from them.

Why dlib 68 points: the corpus manifest stores landmarks in exactly this order, so curation, evaluation and the
synthetic ground truth speak one format. The mouth opening drives the cascade's audio-visual sync check
(mouth movement vs audio envelope) until a learned sync expert is available.
"""

from __future__ import annotations

import functools

import numpy as np

from .box import Box

MOUTH_OUTER = slice(48, 60)
MOUTH_INNER = slice(60, 68)
# Inner-lip pairs (upper, lower) in dlib order: 61-67, 62-66, 63-65.
_INNER_PAIRS = ((61, 67), (62, 66), (63, 65))


@functools.lru_cache(maxsize=1)
def shape_predictor_68():
    import dlib
    import face_recognition_models as frm

    return dlib.shape_predictor(frm.pose_predictor_model_location())


def dlib_rect(box: Box):
    import dlib

    return dlib.rectangle(int(round(box.x0)), int(round(box.y0)), int(round(box.x1)) - 1, int(round(box.y1)) - 1)


def landmarks_68(frame: np.ndarray, box: Box) -> np.ndarray:
    """(68, 2) float32 pixel coordinates (x, y) of the face inside `box` (dlib order).

    The predictor always returns 68 points, even on a non-face: callers decide from the detector whether a face
    is there; this function only localises.
    """
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    shape = shape_predictor_68()(frame, dlib_rect(box))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def mouth_opening(landmarks: np.ndarray) -> float:
    """Inner-lip gap divided by mouth width: scale-free, so it compares across face sizes and zoom.

    Returns 0 for a closed mouth, ~0.3–0.6 for a wide-open one. Accepts (68, 2) or the manifest's flat 136 list.
    """
    lm = np.asarray(landmarks, dtype=np.float32).reshape(68, 2)
    gap = np.mean([np.linalg.norm(lm[u] - lm[d]) for u, d in _INNER_PAIRS])
    width = np.linalg.norm(lm[54] - lm[48])
    return float(gap / width) if width > 1e-6 else 0.0


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) ArcFace alignment points (left eye, right eye, nose tip, left/right mouth corner) from 68 points,
    so the ArcFace backend can align faces without a second landmark model."""
    lm = np.asarray(landmarks, dtype=np.float32).reshape(68, 2)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)


def head_yaw_proxy(landmarks: np.ndarray) -> float:
    """Signed horizontal asymmetry of the nose tip between the face's jaw edges, in [-1, 1] (0 = frontal).

    Cheap head-turn measure for the cascade's head-pose range filter; ±1 means the nose reaches a jaw edge
    (roughly ±60–90° yaw).
    """
    lm = np.asarray(landmarks, dtype=np.float32).reshape(68, 2)
    left, right, nose = lm[0, 0], lm[16, 0], lm[30, 0]
    half = (right - left) / 2
    return float(np.clip((nose - (left + right) / 2) / half, -1, 1)) if half > 1e-6 else 0.0
