"""Per-clip features for the identity graph: one face embedding and one background descriptor per clip.

Seed: clips are linked when they show the same person (high face similarity) in different scenes (low
background similarity). A speaker embedding of the clip's voice backs the face up against look-alikes. The face embedding is the mean of `embed_frames` per-frame embeddings of the main track
(dlib 128-D offline, ArcFace when a model file is given); the background descriptor is an HSV colour
histogram of the frame's border ring with the face masked out.
"""

from __future__ import annotations

import numpy as np

from ..faces import embed_faces
from ..media.speaker import voice_embedding  # noqa: F401 - part of this module's interface (cascade.py)

BG_BINS = (8, 4, 4)


def face_embedding(ctx) -> tuple[np.ndarray, float]:
    """(L2-normalised mean embedding, spread = lowest cosine of a frame to the mean) of the main face."""
    c, fp = ctx.cfg, ctx.faces
    span = fp.span()
    if fp.main is None or span.size == 0:
        return np.zeros(0, np.float32), float("nan")
    picks = span[np.linspace(0, span.size - 1, num=min(c.embed_frames, span.size)).round().astype(int)]
    emb = embed_faces([ctx.frames[t] for t in picks], [fp.box(t) for t in picks], backend=c.embedding_backend,
                      model_path=c.arcface_onnx or None, landmarks=[fp.landmarks[t] for t in picks])
    mean = emb.mean(axis=0)
    mean /= max(np.linalg.norm(mean), 1e-8)
    return mean.astype(np.float32), float((emb @ mean).min())


def background_mask(shape: tuple[int, int], face) -> np.ndarray:
    """uint8 mask of the frame's outer ring (15 % of each side) minus the slightly enlarged face box.

    Why a ring: talking-head framing is tight, so beyond the face only the borders (backdrop, shoulders,
    clothing) are reliably scene and not person; the ring always keeps the corners even for a face that fills
    most of the frame.
    """
    h, w = shape
    mask = np.full((h, w), 255, np.uint8)
    mh, mw = int(round(h * 0.15)), int(round(w * 0.15))
    mask[mh : h - mh, mw : w - mw] = 0
    if face is not None:
        b = face.scale(1.1).clip(w, h)
        mask[int(b.y0) : int(np.ceil(b.y1)), int(b.x0) : int(np.ceil(b.x1))] = 0
    return mask


def background_histogram(ctx, n_frames: int = 3) -> np.ndarray:
    """L1-normalised HSV histogram (8x4x4 bins) of the background ring, averaged over frames."""
    import cv2

    frames, fp = ctx.frames, ctx.faces
    picks = np.linspace(0, len(frames) - 1, num=min(n_frames, len(frames))).round().astype(int)
    hist = np.zeros(int(np.prod(BG_BINS)), np.float64)
    for t in picks:
        hsv = cv2.cvtColor(np.ascontiguousarray(frames[t]), cv2.COLOR_RGB2HSV)
        mask = background_mask(hsv.shape[:2], fp.main.box_at(int(t)) if fp.main is not None else None)
        h = cv2.calcHist([hsv], [0, 1, 2], mask, list(BG_BINS), [0, 180, 0, 256, 0, 256]).ravel()
        hist += h / max(h.sum(), 1.0)
    return (hist / max(hist.sum(), 1e-12)).astype(np.float32)


def background_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram intersection in [0, 1] (1 = same colour distribution)."""
    return float(np.minimum(a, b).sum()) if a.size and b.size else 0.0
