"""Face detection on one RGB frame, with two offline real-weight backends (no hub access needed).

- "mediapipe": MediaPipe 0.10.21 BlazeFace (weights inside the wheel); ~10 ms a frame on CPU and robust on
  small frames, so the curation cascade uses it to count faces in many sampled frames.
- "dlib": dlib's HOG + linear SVM frontal detector; slower and needs faces ≳ 40 px after upsampling, but it is
  the detector dlib's 68-point landmark model was trained with, so its boxes suit `landmarks_68` best.

Implements the seed's data cascade step "face detection" and feeds the single-visible-speaker check.
"""

from __future__ import annotations

import functools

import numpy as np

from ..quiet import native_stderr_off
from .box import Box

BACKENDS = ("mediapipe", "dlib")


@functools.lru_cache(maxsize=4)
def _mediapipe_detector(model_selection: int, min_confidence: float):
    """One detector per process and setting: building the graph costs ~50 ms, running it ~10 ms."""
    import mediapipe as mp

    with native_stderr_off():
        return mp.solutions.face_detection.FaceDetection(model_selection=model_selection,
                                                         min_detection_confidence=min_confidence)


@functools.lru_cache(maxsize=1)
def _dlib_detector():
    import dlib

    return dlib.get_frontal_face_detector()


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"detect_faces: expected an (H, W, 3) RGB frame, got shape {frame.shape}")
    return np.ascontiguousarray(frame, dtype=np.uint8)


def detect_faces(
    frame: np.ndarray,
    backend: str = "mediapipe",
    *,
    min_confidence: float = 0.5,
    upsample: int | None = None,
    model_selection: int = 0,
) -> list[Box]:
    """Faces in one RGB uint8 frame, best first (by score).

    Why two knobs: `min_confidence` trades misses for false alarms (the cascade's two-faces check wants few
    false alarms); `upsample` (dlib only) makes HOG see faces smaller than ~80 px — default 1 for frames under
    640 px, 2 under 200 px. `model_selection` 0 = MediaPipe's short-range model (faces within ~2 m, the
    talking-head case), 1 = full-range.
    """
    frame = _check_frame(frame)
    h, w = frame.shape[:2]
    if backend == "mediapipe":
        detector = _mediapipe_detector(int(model_selection), float(min_confidence))
        with native_stderr_off():
            res = detector.process(frame)
        boxes = []
        for d in res.detections or []:
            rb = d.location_data.relative_bounding_box
            b = Box(rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h, float(d.score[0]))
            b = b.clip(w, h)
            if b.area > 0:
                boxes.append(b)
    elif backend == "dlib":
        if upsample is None:
            upsample = 2 if min(h, w) < 200 else 1 if min(h, w) < 640 else 0
        rects, scores, _ = _dlib_detector().run(frame, int(upsample), 0.0)
        # HOG scores are SVM margins (0 = decision boundary); squash to (0, 1) so one min_confidence fits both
        # backends (0.5 = dlib's own default boundary).
        boxes = [
            Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(1 / (1 + np.exp(-2 * s)))).clip(w, h)
            for r, s in zip(rects, scores)
        ]
        boxes = [b for b in boxes if b.score >= min_confidence and b.area > 0]
    else:
        raise ValueError(f"detect_faces: unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    return sorted(boxes, key=lambda b: -b.score)
