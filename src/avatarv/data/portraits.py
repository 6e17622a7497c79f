"""Face portraits: real photos shipped by installed packages, cut out and aligned to one canonical frame.

A portrait is a square RGBA texture (the head: face and hair, background removed) with its 68 dlib landmarks,
all in a canonical frame where the eyes sit at fixed points. Every identity of the embedded corpus — photo or
procedural — is a portrait; the renderer animates it by moving the landmarks. This is the "real identity"
half of the seed's identity-preservation data: no dataset is reachable, so the faces come from the sample
photos that scikit-image, matplotlib and insightface ship.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

TEX = 256  # canonical texture side (px)
EYE_L = np.array([0.385, 0.40]) * TEX  # image-left eye centre (the person's right eye, dlib 36-41)
EYE_R = np.array([0.615, 0.40]) * TEX
MAX_TURN = 0.35  # |nose offset| / jaw width above which a photo face is too turned to animate frontally


@dataclass
class Portrait:
    """A head texture in the canonical frame: rgb (TEX,TEX,3) uint8, alpha (TEX,TEX) float32, landmarks (68,2)."""

    name: str
    rgb: np.ndarray
    alpha: np.ndarray
    landmarks: np.ndarray
    skin: np.ndarray  # mean cheek colour (3,) float, for the neck and the procedural edits

    def copy(self, name: str | None = None) -> Portrait:
        return Portrait(name or self.name, self.rgb.copy(), self.alpha.copy(), self.landmarks.copy(), self.skin.copy())


def _sources() -> list[tuple[str, np.ndarray]]:
    """(name, RGB image) of every packaged photo known to hold at least one frontal face."""
    out: list[tuple[str, np.ndarray]] = []
    import skimage.data

    out.append(("astronaut", skimage.data.astronaut()))
    try:
        from matplotlib import cbook

        p = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        out.append(("grace_hopper", cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)))
    except (OSError, ValueError, cv2.error):
        pass
    try:
        import insightface

        d = Path(insightface.__file__).parent / "data" / "images"
        for fname, name in (("Tom_Hanks_54745.png", "tom_hanks"), ("t1.jpg", "t1")):
            img = cv2.imread(str(d / fname))
            if img is not None:
                out.append((name, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
    except ImportError:
        pass
    return out


def _eye_centres(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return lm[36:42].mean(0), lm[42:48].mean(0)


def _align(img: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity transform putting the eyes on EYE_L/EYE_R; returns the TEXxTEX crop and its landmarks."""
    el, er = _eye_centres(lm)
    src = np.stack([el, er]).astype(np.float64)
    dst = np.stack([EYE_L, EYE_R])
    d_src, d_dst = src[1] - src[0], dst[1] - dst[0]
    scale = np.linalg.norm(d_dst) / np.linalg.norm(d_src)
    ang = np.arctan2(d_dst[1], d_dst[0]) - np.arctan2(d_src[1], d_src[0])
    c, s = scale * np.cos(ang), scale * np.sin(ang)
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = dst[0] - m[:, :2] @ src[0]
    crop = cv2.warpAffine(img, m, (TEX, TEX), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    lm2 = lm @ m[:, :2].T + m[:, 2]
    return crop, lm2.astype(np.float32)


def turn(lm: np.ndarray) -> float:
    """Signed head-turn proxy: nose-tip offset from the jaw midpoint over the jaw width (0 = frontal)."""
    return float((lm[30, 0] - (lm[0, 0] + lm[16, 0]) / 2) / max(lm[16, 0] - lm[0, 0], 1e-6))


def head_polygon(lm: np.ndarray, hair: float = 1.0) -> np.ndarray:
    """Outline of the head: the jaw line (slightly widened) closed by an arc over the skull.

    Below the jaw the photo's own neck and clothes are dropped; the renderer draws neck and body per scene.
    """
    jaw = lm[0:17].astype(np.float64)
    centre = jaw.mean(0)
    jaw = centre + (jaw - centre) * np.array([1.04, 1.0])
    top_y = lm[17:27, 1].min() - hair * 0.75 * (lm[8, 1] - lm[17:27, 1].min())
    cx = (jaw[0, 0] + jaw[16, 0]) / 2
    rx = (jaw[16, 0] - jaw[0, 0]) / 2 * 1.12
    y0 = (jaw[0, 1] + jaw[16, 1]) / 2
    ry = y0 - top_y
    t = np.linspace(0, np.pi, 25)
    arc = np.stack([cx + rx * np.cos(t), y0 - ry * np.sin(t)], 1)
    return np.concatenate([jaw, arc[1:-1]], 0).astype(np.float32)


def _skin_colour(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Median colour of two cheek patches (below the eyes, beside the nose): robust to make-up and shadow."""
    pts = []
    for a, b in ((1, 31), (15, 35)):
        p = (lm[a] * 0.5 + lm[b] * 0.5).astype(int)
        r = max(2, int(0.04 * TEX))
        pts.append(rgb[max(0, p[1] - r) : p[1] + r, max(0, p[0] - r) : p[0] + r].reshape(-1, 3))
    return np.median(np.concatenate(pts), axis=0).astype(np.float32)


def _erase_mouth_interior(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Inpaint the photo's own teeth/mouth gap with the lip colours around it.

    The renderer paints its own mouth interior when the jaw opens; a smile's teeth left in the texture would be
    stretched across the lips instead.
    """
    mask = np.zeros(rgb.shape[:2], np.uint8)
    inner = lm[60:68].astype(np.float64)
    c = inner.mean(0)
    grown = c + (inner - c) * np.array([1.08, 1.6]) + np.array([0, 0.5])
    cv2.fillPoly(mask, [np.round(grown * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
    return cv2.inpaint(rgb, mask, 4, cv2.INPAINT_TELEA)


def _person_mask(rgb: np.ndarray) -> np.ndarray:
    import mediapipe as mp

    from ..quiet import native_stderr_off

    with native_stderr_off(), mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        m = seg.process(rgb).segmentation_mask
    return np.clip(np.asarray(m, np.float32), 0, 1)


def make_portrait(name: str, img: np.ndarray, lm: np.ndarray) -> Portrait:
    """Cut one detected face out of a photo into a canonical RGBA portrait."""
    rgb, lm2 = _align(img, lm)
    rgb = _erase_mouth_interior(rgb, lm2)
    head = np.zeros((TEX, TEX), np.uint8)
    cv2.fillPoly(head, [np.round(head_polygon(lm2) * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    face = np.zeros((TEX, TEX), np.uint8)
    cv2.fillConvexPoly(face, np.round(cv2.convexHull(lm2[:27]) * 16).astype(np.int32), 255, lineType=cv2.LINE_AA, shift=4)
    person = _person_mask(rgb)
    # Hair and skull come from the segmentation; the face itself is always kept (segmenters nibble at chins).
    alpha = np.maximum(person * (head / 255.0), face / 255.0).astype(np.float32)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.2)
    return Portrait(name, rgb, alpha, lm2, _skin_colour(rgb, lm2))


@functools.lru_cache(maxsize=1)
def photo_portraits() -> tuple[Portrait, ...]:
    """Every frontal face in the packaged photos (dlib HOG + 68 landmarks), as canonical portraits.

    Deterministic: a fixed list of files, a deterministic detector, faces ordered left to right.
    """
    import dlib

    from ..faces.box import Box
    from ..faces.landmarks import landmarks_68

    det = dlib.get_frontal_face_detector()
    out = []
    for name, src in _sources():
        scale = min(1.0, 1280 / max(src.shape[:2]))
        img = cv2.resize(src, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else src
        rects, scores, _ = det.run(img, 1, 0.0)
        faces = sorted((r for r, s in zip(rects, scores) if s > 0.3 and r.width() >= 64), key=lambda r: r.left())
        for k, r in enumerate(faces):
            lm = landmarks_68(img, Box(r.left(), r.top(), r.right() + 1, r.bottom() + 1))
            if abs(turn(lm)) > MAX_TURN:
                continue
            label = name if len(faces) == 1 else f"{name}_{k}"
            out.append(make_portrait(label, img, lm))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def mean_landmarks() -> np.ndarray:
    """Mean canonical 68-point shape over the photo portraits (the triangulation template)."""
    return np.mean([p.landmarks for p in photo_portraits()], axis=0).astype(np.float32)
