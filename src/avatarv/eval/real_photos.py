"""Real face photos that ship inside installed packages (no download): the identity metric's real-image check.

skimage's astronaut portrait and insightface's Tom Hanks photo and t1.jpg group photo give 8 distinct real
people; scikit-image's colour photographs (`package_natural_photos`) are the quality metrics' natural images. Used to
validate identity similarity (ROC AUC of same vs different person) on real faces, next to the
synthetic corpus, and by the tests to build talking-face fixtures.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..faces import Box, detect_faces


@dataclass
class FacePhoto:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    box: Box


def _insightface_images() -> Path | None:
    try:
        import insightface
    except ImportError:  # pragma: no cover
        return None
    return Path(insightface.__file__).parent / "data" / "images"


@functools.lru_cache(maxsize=1)
def package_face_photos() -> tuple[FacePhoto, ...]:
    """Every clearly detected face (dlib HOG, score ≥ 0.75) in the package photos, left to right."""
    import skimage.data

    sources: list[tuple[str, np.ndarray]] = [("astronaut", skimage.data.astronaut())]
    d = _insightface_images()
    if d is not None:
        for fname in ("Tom_Hanks_54745.png", "t1.jpg"):
            img = cv2.imread(str(d / fname))
            if img is not None:
                sources.append((Path(fname).stem, np.ascontiguousarray(img[..., ::-1])))
    out = []
    for name, img in sources:
        boxes = detect_faces(img, "dlib")
        if name == "astronaut":  # HOG also fires on the helmet badge; the portrait holds one face
            boxes = boxes[:1]
        boxes = sorted((b for b in boxes if b.score >= 0.75), key=lambda b: b.x0)
        for i, b in enumerate(boxes):
            out.append(FacePhoto(f"{name}_{i}" if len(boxes) > 1 else name, img, b))
    return tuple(out)


NATURAL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # colour photographs shipped inside scikit-image


@functools.lru_cache(maxsize=1)
def package_natural_photos() -> tuple[np.ndarray, ...]:
    """scikit-image's colour photographs (300-640 px, RGB uint8) at native resolution: the natural images the
    no-reference quality metrics were designed for, as the quality validation's real-photo domain."""
    import skimage.data

    return tuple(np.ascontiguousarray(getattr(skimage.data, n)()[..., :3]) for n in NATURAL_PHOTOS)


def augment(image: np.ndarray, box: Box, rng: np.random.Generator) -> np.ndarray:
    """A plausible second photo of the same person: scale/shift jitter, small rotation, light, colour, JPEG.

    The packages hold one photo per person, so 'same identity' pairs are photometric/geometric variants;
    this is a weaker test than two real photos of one person, and the report says so.
    """
    h, w = image.shape[:2]
    cx, cy = box.center
    ang = rng.uniform(-10, 10)
    scale = rng.uniform(0.9, 1.1)
    m = cv2.getRotationMatrix2D((cx, cy), ang, scale)
    m[:, 2] += rng.uniform(-0.05, 0.05, 2) * box.width
    out = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    out = out.astype(np.float32) * rng.uniform(0.75, 1.2) + rng.uniform(-20, 20, 3)
    out = np.clip(out, 0, 255).astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 90))])
    return cv2.imdecode(enc, cv2.IMREAD_UNCHANGED) if ok else out
