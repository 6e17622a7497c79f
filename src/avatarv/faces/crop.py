"""Face and lip crops cut from tracked face boxes (faces/track.py), sub-pixel exact and edge-padded.

`mouth_box` is SyncNet's lip region (the lower half of the face box); `mouth_crops` feed the sync expert
(models/sync_expert.py) and the evaluation's mouth metrics, `face_crops` the identity and drift metrics. The
training's differentiable crops (train/objectives.crop_rects) follow `crop_resize`'s pixel convention.
"""

from __future__ import annotations

import cv2
import numpy as np

from .box import Box


def crop_resize(frame: np.ndarray, box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop `box` (may extend past the frame: edge-padded) and resize to size=(w, h)."""
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    # Affine map from the box to the output: sub-pixel exact, and borders replicate instead of shrinking the box.
    m = np.array([[size[0] / bw, 0, -x0 * size[0] / bw], [0, size[1] / bh, -y0 * size[1] / bh]], np.float32)
    return cv2.warpAffine(frame, m, size, flags=cv2.INTER_AREA if bw > size[0] else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def mouth_box(face_box: np.ndarray) -> np.ndarray:
    """The lower half of a face box, SyncNet's convention for the lip region (no landmarks needed)."""
    x0, y0, x1, y1 = face_box
    h = y1 - y0
    return np.array([x0 + 0.1 * (x1 - x0), y0 + 0.5 * h, x1 - 0.1 * (x1 - x0), y1 + 0.05 * h], np.float32)


def mouth_crops(frames: np.ndarray, boxes: np.ndarray, size: tuple[int, int] = (48, 32), grey: bool = True) -> np.ndarray:
    """(T, h, w) float32 grey (or (T, h, w, 3) uint8) lower-face crops, one per frame."""
    out = [crop_resize(f, mouth_box(b), size) for f, b in zip(frames, boxes)]
    arr = np.stack(out)
    if grey:
        arr = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    return arr


def face_crops(frames: np.ndarray, boxes: np.ndarray, size: int = 112, margin: float = 1.0) -> np.ndarray:
    """(T, size, size, 3) uint8 face crops (box scaled by `margin`)."""
    out = []
    for f, b in zip(frames, boxes):
        bb = np.array(Box.from_list(b).scale(margin).as_list(), np.float32)
        out.append(crop_resize(f, bb, (size, size)))
    return np.stack(out)
