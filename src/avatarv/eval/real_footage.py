"""Talking clips framed as real footage is: a 16:9 frame, the face 10-30 % of its width, a natural photo behind,
24 or 30 fps — the test bed for "a real person in, that person out" (reports/real_faces.md).

The person is animated by the corpus's own face rig (data/render.py: the same speech, visemes, motion style and
lighting as the corpus), so lip motion follows the speech by construction; only the framing, frame rate and
background are those of real footage, which the corpus never shows. The rig renders a square around the head over
the matching crop of the background photo (pre-divided by the scene light, so the rendered background equals the
photo) and the square is set back into the wide frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..data.clips import poses_for, speak
from ..data.identities import Identity, stable_seed
from ..data.render import close_mouth, render_frame, texture_rgba
from ..data.scenes import look as draw_look
from .real_photos import NATURAL_PHOTOS, package_natural_photos

FRAME = (640, 360)  # (W, H), 16:9
WITH_FACES = ("astronaut",)  # natural photos that show a person: no background, or the clip would hold two faces


@dataclass
class FootageClip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    audio: np.ndarray  # mono float32
    sample_rate: int
    fps: int
    face_fraction: float  # face width / frame width
    text: str


def footage_clip(ident: Identity, *, seconds: float, fps: int = 25, face_fraction: float = 0.2, seed: int = 0,
                 frame: tuple[int, int] = FRAME, background: int = 0, sample_rate: int = 16000) -> FootageClip:
    """`ident` speaking for `seconds` in a wide frame, face `face_fraction` of the frame width."""
    rng = np.random.default_rng(stable_seed(seed, ident.identity, "footage", fps, face_fraction))
    w, h = frame
    n = int(round(seconds * fps))
    speech = speak(ident, rng, int(round(seconds * sample_rate)), sample_rate)
    poses = poses_for(ident, speech, n, fps, sample_rate, rng)
    photos = [img for name, img in zip(NATURAL_PHOTOS, package_natural_photos()) if name not in WITH_FACES]
    bg = _cover(photos[background % len(photos)], w, h)
    lk = draw_look(np.random.default_rng(stable_seed(seed, ident.identity, "footage-look")), ident.teeth_rgb,
                   ident.tongue_rgb)
    side = int(round(min(face_fraction * w / lk.face_width, h)))  # the rig's jaw is face_width of its square
    x0 = int(rng.integers(0, max(1, w - side)))
    y0 = h - side  # the rig draws the shoulders down to its square's bottom edge: stand on the frame's
    big = 2 * side  # render at twice the size, then area-downsample (anti-aliasing, as the corpus does)
    crop = cv2.resize(bg[y0 : y0 + side, x0 : x0 + side], (big, big), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    bg_light = np.asarray(lk.light_rgb, np.float32) * (0.55 + 0.45 * lk.ambient + 0.2)
    canvas_bg = np.clip(crop / np.maximum(bg_light, 1e-3), 0, 255)
    p = ident.portrait
    lm0, tex = close_mouth(p.landmarks), texture_rgba(p)
    frames = np.repeat(bg[None], n, 0)
    for i, pose in enumerate(poses):
        img, _ = render_frame(p, lm0, tex, pose, lk, canvas_bg)
        frames[i, y0 : y0 + side, x0 : x0 + side] = cv2.resize(np.round(img).astype(np.uint8), (side, side),
                                                                interpolation=cv2.INTER_AREA)
    return FootageClip(frames, speech.audio, sample_rate, fps, side * lk.face_width / w, speech.text)


def _cover(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize and centre-crop a photo to fill (w, h)."""
    s = max(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (int(np.ceil(img.shape[1] * s)), int(np.ceil(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
    y, x = (r.shape[0] - h) // 2, (r.shape[1] - w) // 2
    return np.ascontiguousarray(r[y : y + h, x : x + w])
