"""Face identity embeddings: `embed_faces(frames, boxes, backend=...) -> (N, D)` L2-normalised float32.

- "dlib" (offline default): dlib's ResNet face descriptor (face_recognition_models weights), 128-D, aligned with
  dlib's 68-point shape; same-person pairs typically have cosine > ~0.9 (euclidean < 0.6 in dlib's units).
- "arcface": an insightface ArcFace ONNX model (e.g. buffalo_l's w600k_r50.onnx) loaded from a file the user
  supplies (`model_path`, from cfg.eval.arcface_onnx); faces are aligned with insightface's `norm_crop` on five
  points derived from the 68 dlib landmarks. 512-D.

Implements the seed's identity-graph edge criterion "same person (high face similarity)"; the Eval suite uses
the same function for identity-similarity metrics, so both speak one embedding space.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .box import Box
from .landmarks import dlib_rect, five_points, landmarks_68, shape_predictor_68

BACKENDS = ("dlib", "arcface")


@functools.lru_cache(maxsize=1)
def _dlib_encoder():
    import dlib
    import face_recognition_models as frm

    return dlib.face_recognition_model_v1(frm.face_recognition_model_location())


@functools.lru_cache(maxsize=2)
def load_arcface(model_path: str):
    """Load an ArcFace-style ONNX recogniser (input 1x3x112x112 → embedding) through insightface's loader.

    Raises FileNotFoundError naming the file when it is absent, since there is no hub to fall back to.
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ArcFace ONNX model file not found")
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    model = ArcFaceONNX(model_file=str(path))
    model.prepare(ctx_id=-1)
    return model


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def embed_faces(
    frames: Sequence[np.ndarray] | np.ndarray,
    boxes: Sequence[Box],
    backend: str = "dlib",
    *,
    model_path: str | None = None,
    landmarks: Sequence[np.ndarray] | None = None,
    normalise: bool = True,
) -> np.ndarray:
    """One L2-normalised identity embedding per (frame, box) pair: (N, 128) for dlib, (N, 512) for arcface.

    Why pass precomputed `landmarks` (68-point): the cascade already has them for the sync check, so the
    aligner need not run twice. Cosine similarity of two rows = their dot product. `normalise=False` (dlib only)
    keeps dlib's own descriptor scale, where the usual same-person threshold is a euclidean distance of 0.6.
    """
    if len(frames) != len(boxes):
        raise ValueError(f"embed_faces: {len(frames)} frames but {len(boxes)} boxes")
    if landmarks is not None and len(landmarks) != len(boxes):
        raise ValueError(f"embed_faces: {len(landmarks)} landmark sets but {len(boxes)} boxes")
    if len(boxes) == 0:
        return np.zeros((0, 512 if backend == "arcface" else 128), np.float32)
    if backend == "dlib":
        import dlib

        enc, pred = _dlib_encoder(), shape_predictor_68()
        out = []
        for i, (frame, b) in enumerate(zip(frames, boxes)):
            f = np.ascontiguousarray(frame, dtype=np.uint8)
            if landmarks is not None:
                pts = [dlib.point(int(round(x)), int(round(y))) for x, y in np.asarray(landmarks[i]).reshape(68, 2)]
                shape = dlib.full_object_detection(dlib_rect(b), pts)
            else:
                shape = pred(f, dlib_rect(b))
            out.append(np.array(enc.compute_face_descriptor(f, shape, 0)))
        return _normalise(np.stack(out)) if normalise else np.stack(out).astype(np.float32)
    if backend == "arcface":
        if not model_path:
            raise ValueError("embed_faces: backend 'arcface' needs model_path (an ArcFace ONNX file)")
        from insightface.utils.face_align import norm_crop

        model = load_arcface(str(model_path))
        size = int(model.input_size[0])
        crops = []
        for i, (f, b) in enumerate(zip(frames, boxes)):
            lm = landmarks[i] if landmarks is not None else landmarks_68(f, b)
            # insightface models take BGR (its blob step swaps channels back to RGB).
            crops.append(norm_crop(np.ascontiguousarray(f[..., ::-1]), five_points(lm), image_size=size))
        return _normalise(model.get_feat(crops))
    raise ValueError(f"embed_faces: unknown backend {backend!r} (known: {', '.join(BACKENDS)})")


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of two sets of embeddings, (N, D) x (M, D) → (N, M)."""
    return _normalise(np.atleast_2d(a)) @ _normalise(np.atleast_2d(b)).T
