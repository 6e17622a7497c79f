"""A simple face tracker: detect on every `stride`-th frame, link detections by box overlap (IoU), fill the
frames in between by linear interpolation.

Why this and not a learned tracker: talking-head clips have one slowly moving face; IoU linking is exact for
that case and tells apart a second person (a separate track) and a cut (a track that ends while another
starts), which is what the cascade's single-visible-speaker and face-count checks need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .box import Box
from .detect import detect_faces


@dataclass
class Track:
    """One face followed over time: detections at sampled frame indices, sorted by frame."""

    frames: list[int] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def last(self) -> Box:
        return self.boxes[-1]

    @property
    def mean_side(self) -> float:
        return float(np.mean([b.side for b in self.boxes])) if self.boxes else 0.0

    def box_at(self, t: int) -> Box:
        """Box at any frame index: linear interpolation between detections, held constant beyond the ends."""
        if not self.frames:
            raise ValueError("box_at: empty track")
        fr = np.asarray(self.frames)
        coords = np.array([b.as_list() for b in self.boxes])
        xs = [float(np.interp(t, fr, coords[:, k])) for k in range(4)]
        return Box(*xs, score=float(np.interp(t, fr, [b.score for b in self.boxes])))


def link_detections(per_frame: list[tuple[int, list[Box]]], min_iou: float = 0.3, max_gap: int = 3) -> list[Track]:
    """Greedy IoU association of per-frame detections into tracks (longest first).

    `max_gap` is in sampled steps: a track missing for more steps is closed, so a face that disappears at a cut
    and a new face that appears elsewhere become two tracks.
    """
    open_tracks: list[tuple[Track, int]] = []  # (track, step index of its last detection)
    closed: list[Track] = []
    for step, (t, boxes) in enumerate(per_frame):
        closed.extend(tr for tr, last in open_tracks if step - last > max_gap)
        open_tracks = [(tr, last) for tr, last in open_tracks if step - last <= max_gap]
        used: set[int] = set()
        pairs = sorted(
            ((boxes[j].iou(tr.last), i, j) for i, (tr, _) in enumerate(open_tracks) for j in range(len(boxes))),
            reverse=True,
        )
        taken_tracks: set[int] = set()
        for iou, i, j in pairs:
            if iou < min_iou or i in taken_tracks or j in used:
                continue
            tr, _ = open_tracks[i]
            tr.frames.append(t)
            tr.boxes.append(boxes[j])
            open_tracks[i] = (tr, step)
            taken_tracks.add(i)
            used.add(j)
        for j, b in enumerate(boxes):
            if j not in used:
                open_tracks.append((Track([t], [b]), step))
    closed.extend(tr for tr, _ in open_tracks)
    return sorted(closed, key=lambda tr: (-len(tr), -tr.mean_side, tr.frames[0]))  # ties: the bigger face leads


def track_faces(frames: np.ndarray, stride: int = 5, backend: str = "mediapipe", min_confidence: float = 0.5) -> tuple[list[Track], list[tuple[int, list[Box]]]]:
    """Detect every `stride`-th frame and link into tracks; returns (tracks, the raw per-frame detections)."""
    per_frame = [(t, detect_faces(frames[t], backend, min_confidence=min_confidence)) for t in range(0, len(frames), max(1, stride))]
    return link_detections(per_frame), per_frame
