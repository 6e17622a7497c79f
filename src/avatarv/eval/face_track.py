"""One face track per clip for the evaluation metrics: a box on every frame, and the mouth crops cut from it.

Detection runs on every `stride`-th frame (MediaPipe BlazeFace, real offline weights, via avatarv.faces), on an
upscaled copy when the frame is small (generated clips are 64 px at the tiny profile, where BlazeFace misses
faces), then boxes are interpolated and smoothed over time so crops do not jitter. A clip with no detection
falls back to a centred talking-head box and says so (`found=False`), so metrics still run on failed generations
and the report can show how often the face was missing.
Serves every per-face metric of the seed's evaluation (SyncNet confidence, face similarity, mouth quality).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..faces import Box, detect_faces

MIN_DETECT_SIDE = 192  # BlazeFace needs faces of ~40 px and up; upscale frames below this side first


@dataclass
class FaceTrack:
    boxes: np.ndarray  # (T, 4) float32 [x0, y0, x1, y1] px, square, smoothed
    found: bool  # at least one real detection
    detected_frac: float  # share of probed frames with a detection

    def box(self, i: int) -> Box:
        return Box.from_list(self.boxes[i])


def _square(b: np.ndarray) -> np.ndarray:
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    s = max(b[2] - b[0], b[3] - b[1]) / 2
    return np.array([cx - s, cy - s, cx + s, cy + s], np.float32)


def detect_one(frame: np.ndarray, backend: str = "mediapipe") -> np.ndarray | None:
    """Best face box in one frame (square, px) or None; small frames are upscaled before detection."""
    h, w = frame.shape[:2]
    scale = max(1.0, MIN_DETECT_SIDE / min(h, w))
    img = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC) if scale > 1 else frame
    boxes = detect_faces(img, backend)
    if not boxes and backend == "mediapipe":
        boxes = detect_faces(img, "mediapipe", model_selection=1, min_confidence=0.4)
    if not boxes:
        return None
    return _square(np.array(boxes[0].as_list(), np.float32) / scale)


def track_face(frames: np.ndarray, stride: int = 5, backend: str = "mediapipe", smooth: int = 5) -> FaceTrack:
    """Per-frame face boxes for a (T, H, W, 3) clip: detect every `stride` frames, interpolate, smooth."""
    t, h, w = frames.shape[:3]
    probe = sorted(set(range(0, t, max(1, stride))) | {t - 1})
    hits = {i: b for i in probe if (b := detect_one(frames[i], backend)) is not None}
    if not hits:
        s = 0.6 * min(h, w)
        box = np.array([(w - s) / 2, (h - s) / 2 - 0.05 * h, (w + s) / 2, (h + s) / 2 - 0.05 * h], np.float32)
        return FaceTrack(np.repeat(box[None], t, 0), False, 0.0)
    keys = np.array(sorted(hits))
    vals = np.stack([hits[k] for k in keys])
    boxes = np.stack([np.interp(np.arange(t), keys, vals[:, j]) for j in range(4)], 1).astype(np.float32)
    if smooth > 1 and t > smooth:
        kernel = np.ones(smooth) / smooth
        pad = np.pad(boxes, ((smooth // 2, smooth - 1 - smooth // 2), (0, 0)), mode="edge")
        boxes = np.stack([np.convolve(pad[:, j], kernel, mode="valid") for j in range(4)], 1).astype(np.float32)
    return FaceTrack(boxes, True, len(hits) / len(probe))


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


def track_landmarks(frames: np.ndarray, track: FaceTrack, indices=None) -> np.ndarray:
    """(k, 68, 2) dlib landmarks on the tracked box of each frame in `indices` (default all).

    Frames whose face is under ~160 px are upscaled first: dlib's predictor was trained on faces of that
    size and drifts on 40-px faces (the tiny profile's generated clips).
    """
    from ..faces import landmarks_68

    idx = range(len(frames)) if indices is None else indices
    out = []
    for i in idx:
        b = track.boxes[int(i)]
        s = max(1.0, 160.0 / max(1.0, b[2] - b[0]))
        f = frames[int(i)]
        if s > 1:
            f = cv2.resize(f, (round(f.shape[1] * s), round(f.shape[0] * s)), interpolation=cv2.INTER_CUBIC)
        out.append(landmarks_68(f, Box.from_list(b * s)) / s)
    return np.stack(out).astype(np.float32) if out else np.zeros((0, 68, 2), np.float32)
