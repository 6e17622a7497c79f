"""Scenes: where and how an identity is filmed — background, light colour and direction, framing/zoom, clothing.

Every identity appears in several scenes so that reference → target pairs can cross scenes, as the seed's
personality SFT requires (same person, different setting: the model must carry identity and motion style
across, not copy the background). A scene is drawn from a seed derived from (identity, scene index).
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from .render import Look

BACKGROUNDS = ("gradient", "wall_window", "shelves", "bokeh", "stripes", "studio")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def background(rng: np.random.Generator, side: int) -> tuple[np.ndarray, str]:
    """A static backdrop (side, side, 3) float32 and its kind."""
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    h = rng.uniform()
    c1 = _hsv(h, rng.uniform(0.15, 0.7), rng.uniform(0.35, 0.9))
    c2 = _hsv(h + rng.uniform(-0.25, 0.25), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.8))
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side
    ang = rng.uniform(0, 2 * np.pi)
    ramp = np.clip(0.5 + (xs - 0.5) * np.cos(ang) + (ys - 0.5) * np.sin(ang), 0, 1)[..., None]
    img = c1 * (1 - ramp) + c2 * ramp
    if kind == "wall_window":
        x0 = rng.uniform(0.0, 0.6) * side
        w = rng.uniform(0.25, 0.4) * side
        y0 = rng.uniform(0.05, 0.3) * side
        sky = _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.2, 0.6), rng.uniform(0.8, 1.0))
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + w), int(y0 + 1.3 * w)), sky.tolist(), -1)
        frame = (c2 * 0.6).tolist()
        t = max(2, side // 40)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + w), int(y0 + 1.3 * w)), frame, t)
        cv2.line(img, (int(x0 + w / 2), int(y0)), (int(x0 + w / 2), int(y0 + 1.3 * w)), frame, t)
    elif kind == "shelves":
        for k in range(4):
            y = int((0.15 + 0.25 * k) * side)
            cv2.rectangle(img, (0, y), (side, y + max(2, side // 50)), (c2 * 0.5).tolist(), -1)
            x = 0
            while x < side:
                bw = int(rng.uniform(0.02, 0.06) * side) + 1
                bh = int(rng.uniform(0.1, 0.2) * side)
                col = _hsv(rng.uniform(), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8)).tolist()
                cv2.rectangle(img, (x, y - bh), (x + bw - 1, y), col, -1)
                x += bw + int(rng.integers(0, 3))
    elif kind == "bokeh":
        layer = np.zeros_like(img)
        for _ in range(int(rng.integers(8, 20))):
            c = (int(rng.uniform() * side), int(rng.uniform() * side))
            r = int(rng.uniform(0.04, 0.12) * side)
            cv2.circle(layer, c, r, _hsv(rng.uniform(), rng.uniform(0.2, 0.7), 1.0).tolist(), -1, cv2.LINE_AA)
        img = np.clip(img + 0.45 * cv2.GaussianBlur(layer, (0, 0), side / 60), 0, 255)
    elif kind == "stripes":
        period = rng.uniform(0.08, 0.2) * side
        s = (np.sin(2 * np.pi * (xs * side * np.cos(ang) + ys * side * np.sin(ang)) / period) > 0)[..., None]
        img = np.where(s, img, img * 0.8 + c2 * 0.2)
    elif kind == "studio":
        r = np.sqrt((xs - 0.5) ** 2 + (ys - 0.45) ** 2)[..., None]
        img = c1 * np.clip(1.2 - 1.1 * r, 0.3, 1.0)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), side / 256)  # depth of field: backdrop slightly soft
    return np.clip(img, 0, 255).astype(np.float32), kind


def look(rng: np.random.Generator, teeth_rgb=(236, 232, 220), tongue_rgb=(196, 92, 98)) -> Look:
    """Framing, light and clothing for one scene.

    face_width is the jaw width as a fraction of the frame: 0.62–0.72 keeps dlib's face box ≥ ~80 px at 128 px so
    dlib HOG and MediaPipe find it in every clean clip (curation relies on detection).
    """
    light_h = rng.choice([0.08, 0.1, 0.55, 0.6, 0.0, 0.95])  # warm tungsten, daylight, cool LED, ...
    light = np.array(colorsys.hsv_to_rgb(light_h, rng.uniform(0.0, 0.22), 1.0))
    light = light / light.max() * rng.uniform(0.85, 1.08)
    a = rng.uniform(0, 2 * np.pi)
    return Look(
        face_width=float(rng.uniform(0.62, 0.72)),
        centre=(float(rng.uniform(0.44, 0.56)), float(rng.uniform(0.36, 0.42))),
        light_dir=(float(np.cos(a)), float(np.sin(a))),
        light_rgb=tuple(float(v) for v in light),
        ambient=float(rng.uniform(0.35, 0.75)),
        clothing_rgb=tuple(int(v) for v in _hsv(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.15, 0.9))),
        collar=int(rng.integers(3)),
        teeth_rgb=tuple(int(v) for v in teeth_rgb),
        tongue_rgb=tuple(int(v) for v in tongue_rgb),
    )
