"""A check on every generated video: is the reference's face there, and is it the same person?

Judged by dlib (HOG detector + ResNet descriptor, face_recognition_models weights), which no training loss uses
(the identity loss trains on the project's own FaceEmbedder; the lip-sync loss on its sync expert), so a model
cannot have learned to please it. Faces are looked for in sampled output frames (small frames upscaled, as HOG
needs faces of ~80 px); identity is the median euclidean distance between the output's faces and the reference's
face in dlib's own units, where the library's same-person threshold is 0.6.

`avatarv generate` prints the one-line summary and writes the numbers into the output's metadata sidecar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..faces import Box, detect_faces, embed_faces

JUDGE = "dlib HOG detector + dlib ResNet descriptor (face_recognition_models)"
SAME_PERSON = 0.6  # dlib's documented euclidean threshold
MIN_FOUND = 0.95  # share of sampled output frames that must show a face
HOG_SIDE = 256  # frames smaller than this are upscaled before HOG detection


@dataclass
class SelfCheck:
    frames_checked: int
    face_found_frac: float
    identity_distance: float | None  # median over frames with a face; None when no face anywhere
    judge: str = JUDGE

    @property
    def ok(self) -> bool:
        return (self.face_found_frac >= MIN_FOUND and self.identity_distance is not None
                and self.identity_distance <= SAME_PERSON)

    def summary(self) -> str:
        dist = "n/a" if self.identity_distance is None else f"{self.identity_distance:.2f}"
        verdict = "ok" if self.ok else "WARNING: the output may not show the reference's face"
        return (f"self-check: face in {self.face_found_frac:.0%} of {self.frames_checked} sampled frames, "
                f"identity distance {dist} (same person <= {SAME_PERSON}) — {verdict}")

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "same_person_threshold": SAME_PERSON}


def _biggest_face(frame: np.ndarray) -> tuple[np.ndarray, Box] | None:
    """(the frame the box refers to, the largest HOG face) or None; small frames are upscaled first."""
    h, w = frame.shape[:2]
    s = max(1.0, HOG_SIDE / min(h, w))
    img = cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC) if s > 1 else frame
    boxes = detect_faces(img, "dlib", min_confidence=0.5)
    if not boxes:
        return None
    return img, max(boxes, key=lambda b: b.area)


def descriptor(frame: np.ndarray) -> np.ndarray | None:
    """dlib's raw 128-D descriptor of the largest face in a frame, or None."""
    found = _biggest_face(frame)
    if found is None:
        return None
    img, box = found
    return embed_faces([img], [box], "dlib", normalise=False)[0]


def self_check(frames: np.ndarray, reference: np.ndarray, n_frames: int = 12) -> SelfCheck:
    """Face presence and identity distance to `reference` (one RGB frame showing the person) over up to
    `n_frames` evenly spaced output frames."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(n_frames, len(frames))).round().astype(int))
    ref = descriptor(reference)
    found, dists = 0, []
    for i in idx:
        d = descriptor(frames[i])
        if d is None:
            continue
        found += 1
        if ref is not None:
            dists.append(float(np.linalg.norm(d - ref)))
    return SelfCheck(len(idx), found / len(idx), float(np.median(dists)) if dists else None)
