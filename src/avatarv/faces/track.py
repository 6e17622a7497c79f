"""Face tracking over a clip: detect on every `stride`-th frame, fill the frames in between by linear
interpolation.

Two views of a clip, built on the same detections (faces/detect.py) and the same interpolation (`Track`):

- `track_faces`: every face, with detections linked by box overlap (IoU). Talking-head clips have one slowly
  moving face; IoU linking is exact for that case and tells apart a second person (a separate track) and a cut (a
  track that ends while another starts), which is what the curation cascade's single-visible-speaker and
  face-count checks need.
- `track_face`: the one talking face as a square box on every frame, smoothed over time so crops do not jitter.
  Small frames are upscaled before detection (generated clips are 64 px at the tiny profile, where BlazeFace
  misses faces). A clip with no detection falls back to a centred talking-head box and says so (`found=False`),
  so metrics still run on failed generations and the report can show how often the face was missing. It serves
  every per-face metric of the evaluation (SyncNet confidence, face similarity, mouth quality), the sync expert's
  lip crops and the training's lip-sync loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .box import Box
from .detect import detect_faces
from .landmarks import landmarks_68

MIN_DETECT_SIDE = 192  # BlazeFace needs faces of ~40 px and up; upscale frames below this side first


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

    def coords_at(self, ts) -> np.ndarray:
        """(len(ts), 4) [x0, y0, x1, y1] at frame indices `ts`: linear interpolation between detections, held
        constant beyond the ends."""
        if not self.frames:
            raise ValueError("coords_at: empty track")
        coords = np.array([b.as_list() for b in self.boxes])
        return np.stack([np.interp(ts, self.frames, coords[:, k]) for k in range(4)], -1)

    def box_at(self, t: int) -> Box:
        """Box at any frame index (see `coords_at`), with the interpolated detector score."""
        xs = self.coords_at([t])[0]
        return Box(*(float(x) for x in xs), score=float(np.interp(t, self.frames, [b.score for b in self.boxes])))


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


@dataclass
class FaceTrack:
    """The talking face of a clip, one box per frame (`track_face`)."""

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
    hits = [(i, b) for i in probe if (b := detect_one(frames[i], backend)) is not None]
    if not hits:
        s = 0.6 * min(h, w)
        box = np.array([(w - s) / 2, (h - s) / 2 - 0.05 * h, (w + s) / 2, (h + s) / 2 - 0.05 * h], np.float32)
        return FaceTrack(np.repeat(box[None], t, 0), False, 0.0)
    track = Track([i for i, _ in hits], [Box.from_list(b) for _, b in hits])
    boxes = track.coords_at(np.arange(t)).astype(np.float32)
    if smooth > 1 and t > smooth:
        kernel = np.ones(smooth) / smooth
        pad = np.pad(boxes, ((smooth // 2, smooth - 1 - smooth // 2), (0, 0)), mode="edge")
        boxes = np.stack([np.convolve(pad[:, j], kernel, mode="valid") for j in range(4)], 1).astype(np.float32)
    return FaceTrack(boxes, True, len(hits) / len(probe))


def track_landmarks(frames: np.ndarray, track: FaceTrack, indices=None) -> np.ndarray:
    """(k, 68, 2) dlib landmarks on the tracked box of each frame in `indices` (default all).

    Frames whose face is under ~160 px are upscaled first: dlib's predictor was trained on faces of that
    size and drifts on 40-px faces (the tiny profile's generated clips).
    """
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
