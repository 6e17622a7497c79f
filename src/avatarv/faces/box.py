"""Face boxes: one small value type shared by detection, tracking, landmarks and embeddings.

Part of the shared face toolbox behind the seed's data cascade ("face detection + tracking") and its identity
graph ("same person: high face similarity").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """Axis-aligned face box in pixels, [x0, y0) to [x1, y1), with the detector's confidence."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    @property
    def side(self) -> float:
        """Geometric mean side: the one number face-size thresholds compare against."""
        return float(np.sqrt(self.area))

    def iou(self, other: Box) -> float:
        """Intersection over union; the tracker links detections across frames with it."""
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def clip(self, width: int, height: int) -> Box:
        """Clamp to the frame so crops never index outside the image."""
        return Box(max(0.0, self.x0), max(0.0, self.y0), min(float(width), self.x1), min(float(height), self.y1), self.score)

    def scale(self, factor: float) -> Box:
        """Grow or shrink about the centre (e.g. a margin around the face for quality crops)."""
        cx, cy = self.center
        hw, hh = self.width * factor / 2, self.height * factor / 2
        return Box(cx - hw, cy - hh, cx + hw, cy + hh, self.score)

    def as_list(self) -> list[float]:
        """[x0, y0, x1, y1], the manifest's face_box layout."""
        return [float(self.x0), float(self.y0), float(self.x1), float(self.y1)]

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """The pixels inside the box (clamped); an empty box gives a 0-sized array."""
        b = self.clip(frame.shape[1], frame.shape[0])
        return frame[int(b.y0) : int(np.ceil(b.y1)), int(b.x0) : int(np.ceil(b.x1))]

    @classmethod
    def from_list(cls, xs, score: float = 1.0) -> Box:
        x0, y0, x1, y1 = (float(v) for v in xs[:4])
        return cls(x0, y0, x1, y1, score)
