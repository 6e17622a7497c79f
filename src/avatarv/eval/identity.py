"""Identity preservation: face similarity between a generated clip and the reference person (seed: "Face
Similarity 0.840").

Backends (the metric row names which one produced it):
- "dlib" (default, offline real weights): dlib's 128-D ResNet descriptor through avatarv.faces.embed_faces.
- "arcface": an insightface ArcFace ONNX recogniser supplied by the user (cfg.eval.arcface_onnx), 512-D.
Per clip we embed `n_frames` evenly spaced frames on both sides, average each side's unit embeddings and report
the cosine of the means (robust to single bad frames) and the mean per-frame cosine to the reference centroid.
`roc_auc` validates the embedding on labelled pairs (same vs different identity).
"""

from __future__ import annotations

import numpy as np

from ..faces import Box, FaceTrack, embed_faces, landmarks_68, track_face


def backend_name(backend: str, model_path: str = "") -> str:
    return "dlib-resnet128 (face_recognition_models)" if backend == "dlib" else f"arcface-onnx ({model_path})"


def sample_indices(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def embed_clip(frames: np.ndarray, track: FaceTrack | None = None, n_frames: int = 8, backend: str = "dlib",
               model_path: str = "", indices: np.ndarray | None = None) -> np.ndarray:
    """(k, D) unit embeddings of the tracked face on k evenly spaced frames (or the given `indices`)."""
    track = track or track_face(frames)
    idx = sample_indices(len(frames), n_frames) if indices is None else np.asarray(indices)
    boxes = [track.box(int(i)) for i in idx]
    imgs = [np.ascontiguousarray(frames[int(i)]) for i in idx]
    lms = [landmarks_68(im, b) for im, b in zip(imgs, boxes)]
    return embed_faces(imgs, boxes, backend, model_path=model_path or None, landmarks=lms)


def centroid(emb: np.ndarray) -> np.ndarray:
    c = emb.mean(0)
    return c / max(np.linalg.norm(c), 1e-8)


def identity_similarity(gen_emb: np.ndarray, ref_emb: np.ndarray) -> dict:
    """Cosine of the two centroids, and the mean/min per-frame cosine of generated frames to the reference."""
    rc = centroid(ref_emb)
    per_frame = gen_emb @ rc
    return {"face_sim": float(centroid(gen_emb) @ rc), "face_sim_frame_mean": float(per_frame.mean()),
            "face_sim_frame_min": float(per_frame.min())}


def embed_photo(image: np.ndarray, box: Box, backend: str = "dlib", model_path: str = "") -> np.ndarray:
    return embed_faces([image], [box], backend, model_path=model_path or None)[0]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability a random positive outscores a random negative; ties count ½)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    # average ranks over ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def pair_scores(embeddings: np.ndarray, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All unordered pairs: cosine similarity and whether both share a label."""
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-8)
    i, j = np.triu_indices(len(e), 1)
    lab = np.asarray(labels)
    return (e[i] * e[j]).sum(1), lab[i] == lab[j]
