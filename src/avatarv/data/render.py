"""Frame renderer of the embedded corpus: a portrait animated by its 68 landmarks.

Per frame: (1) move the canonical landmarks for the expression (jaw drop, lip spread/rounding, blink, brows),
(2) rotate them on a head ellipsoid for yaw/pitch and place them in the frame (scale, roll, shift), (3) warp the
portrait's texture piecewise-affinely from its own landmarks to the moved ones (one triangle mesh shared by all
identities), (4) paint what the warp cannot know — the mouth interior with teeth and tongue, the neck and the
clothed shoulders — and light everything. The landmarks used to warp ARE the ground truth written to the
manifest, so the motion stream and the lip-sync labels are exact. Implements the seed's talking-head training
data (identity + lip sync + head motion) without any dataset.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from .portraits import TEX, Portrait, mean_landmarks

N_ANCHORS = 20
INNER_MOUTH = list(range(60, 68))


@dataclass
class Pose:
    """One frame's animation state (the manifest's per-frame ground truth)."""

    yaw: float = 0.0  # degrees, + turns to the image right
    pitch: float = 0.0  # degrees, + nods down
    roll: float = 0.0  # degrees
    dx: float = 0.0  # head shift in output px
    dy: float = 0.0
    mouth_open: float = 0.0  # 0..1
    mouth_width: float = 0.5  # 0 rounded .. 0.5 neutral .. 1 spread
    blink: float = 0.0  # 0 open .. 1 closed
    brow: float = 0.0  # 0 rest .. 1 raised


@dataclass
class Look:
    """How a scene shows the person: framing, light, clothing (scenes.py draws these per (identity, scene))."""

    face_width: float  # jaw width as a fraction of the frame side
    centre: tuple[float, float]  # eye-midpoint position as fractions of the frame
    light_dir: tuple[float, float]  # unit-ish 2-D direction the light comes from (x right, y down)
    light_rgb: tuple[float, float, float]  # multiplicative tint
    ambient: float  # 0..1 share of light that is not directional
    clothing_rgb: tuple[int, int, int]
    collar: int  # 0 round, 1 V, 2 shirt collar
    teeth_rgb: tuple[int, int, int] = (236, 232, 220)
    tongue_rgb: tuple[int, int, int] = (196, 92, 98)


def anchor_ring() -> np.ndarray:
    """Fixed points around the whole texture so every head pixel lies in some mesh triangle."""
    t = np.linspace(0, 2 * np.pi, N_ANCHORS, endpoint=False)
    return np.stack([TEX * (0.5 + 0.78 * np.cos(t)), TEX * (0.48 + 0.78 * np.sin(t))], 1).astype(np.float32)


def _point_in_poly(p: np.ndarray, poly: np.ndarray) -> bool:
    return cv2.pointPolygonTest(poly.astype(np.float32).reshape(-1, 1, 2), (float(p[0]), float(p[1])), False) > 0


@functools.lru_cache(maxsize=1)
def triangles() -> np.ndarray:
    """(K, 3) vertex indices into [68 landmarks + anchors]: Delaunay on the mean face with an open mouth,
    minus the triangles inside the inner lips (the renderer paints the mouth interior there instead)."""
    from scipy.spatial import Delaunay

    # the template mouth is opened the way the renderer opens it, so the inner-lip polygon is convex and no
    # lip triangle spans the cavity
    lm = express(close_mouth(mean_landmarks()), Pose(mouth_open=0.8))
    pts = np.concatenate([lm, anchor_ring()])
    tri = Delaunay(pts.astype(np.float64)).simplices
    inner = pts[INNER_MOUTH]
    keep = [t for t in tri if not _point_in_poly(pts[t].mean(0), inner)]
    return np.array(sorted(map(tuple, keep)), dtype=np.int32)


# --------------------------------------------------------------------------------------------- geometry
def close_mouth(lm: np.ndarray) -> np.ndarray:
    """Neutral (closed-lips) version of a portrait's landmarks: inner lips meet on their midline."""
    lm = lm.copy()
    for up, lo in ((61, 67), (62, 66), (63, 65)):
        mid = (lm[up, 1] + lm[lo, 1]) / 2
        lm[up, 1] = lm[lo, 1] = mid
    return lm


def express(lm0: np.ndarray, p: Pose) -> np.ndarray:
    """Move neutral canonical landmarks for mouth, eyes and brows."""
    lm = lm0.astype(np.float64).copy()
    mw = np.linalg.norm(lm[54] - lm[48])
    face_h = lm[8, 1] - lm[17:27, 1].mean()
    mc = lm[48:68].mean(0)
    # lip spread (smile-like) or rounding (o/u): horizontal scale about the mouth centre
    sx = 1.0 + 0.4 * (p.mouth_width - 0.5)
    lm[48:68, 0] = mc[0] + (lm[48:68, 0] - mc[0]) * sx
    if p.mouth_width < 0.5:  # rounding also pushes the lips together vertically a little and forward (taller)
        r = 0.5 - p.mouth_width
        lm[[50, 51, 52], 1] -= 0.06 * r * mw
        lm[[56, 57, 58], 1] += 0.06 * r * mw
    gap = float(np.clip(p.mouth_open, 0, 1)) * 0.5 * mw
    moves = {  # share of the jaw drop each point follows
        61: -0.2, 62: -0.22, 63: -0.2, 50: -0.12, 51: -0.14, 52: -0.12, 49: -0.05, 53: -0.05,
        65: 0.8, 66: 0.8, 67: 0.8, 55: 0.75, 56: 0.8, 57: 0.8, 58: 0.8, 59: 0.75,
        48: 0.3, 54: 0.3, 60: 0.3, 64: 0.3,
        8: 0.85, 7: 0.78, 9: 0.78, 6: 0.6, 10: 0.6, 5: 0.38, 11: 0.38, 4: 0.15, 12: 0.15,
    }
    for i, k in moves.items():
        lm[i, 1] += k * gap
    # blink: upper lids come down onto the lower lids
    b = float(np.clip(p.blink, 0, 1))
    for up, lo in ((37, 41), (38, 40), (43, 47), (44, 46)):
        lm[up, 1] += b * (lm[lo, 1] - lm[up, 1]) * 0.95
    lm[17:27, 1] += 0.015 * face_h * b
    lm[17:27, 1] -= float(np.clip(p.brow, 0, 1)) * 0.09 * face_h
    return lm


def _depth(pts: np.ndarray, lm0: np.ndarray) -> np.ndarray:
    """Depth of each point on a head ellipsoid (+ a nose bump), in canonical px; anchors get ~0."""
    cx = (lm0[0, 0] + lm0[16, 0]) / 2
    cy = (lm0[27, 1] + lm0[8, 1]) / 2
    rx = (lm0[16, 0] - lm0[0, 0]) / 2 * 1.05
    ry = (lm0[8, 1] - lm0[27, 1]) * 0.85
    u = (pts[:, 0] - cx) / rx
    v = (pts[:, 1] - cy) / ry
    z = rx * 0.9 * np.sqrt(np.clip(1 - u * u - v * v, 0, 1))
    z[27:36] += rx * np.array([0.05, 0.1, 0.16, 0.24, 0.12, 0.14, 0.16, 0.14, 0.12])[: len(range(27, 36))]
    return z


def place(lm_c: np.ndarray, lm0: np.ndarray, p: Pose, look: Look, side: int) -> np.ndarray:
    """Canonical points (landmarks then anchors) → frame pixels: yaw/pitch on the ellipsoid, then scale, roll,
    shift. `lm0` is the neutral shape (for the ellipsoid and the scale)."""
    pts = lm_c.astype(np.float64)
    z = _depth(pts, lm0)
    cx = (lm0[0, 0] + lm0[16, 0]) / 2
    cy = (lm0[27, 1] + lm0[8, 1]) / 2
    ya, pa = np.radians(p.yaw), np.radians(p.pitch)
    x = cx + (pts[:, 0] - cx) * np.cos(ya) + z * np.sin(ya)
    z2 = -(pts[:, 0] - cx) * np.sin(ya) + z * np.cos(ya)
    y = cy + (pts[:, 1] - cy) * np.cos(pa) + z2 * np.sin(pa)
    eye_mid = (lm0[36:48].mean(0))
    jaw_w = lm0[16, 0] - lm0[0, 0]
    s = look.face_width * side / jaw_w
    ra = np.radians(p.roll)
    c, sn = np.cos(ra), np.sin(ra)
    xr, yr = x - eye_mid[0], y - eye_mid[1]
    scale = side / 128.0  # head shifts are given in 128-px units so styles look the same at every size
    ox = look.centre[0] * side + p.dx * scale
    oy = look.centre[1] * side + p.dy * scale
    return np.stack([ox + s * (c * xr - sn * yr), oy + s * (sn * xr + c * yr)], 1)


# --------------------------------------------------------------------------------------------- warp
def warp(tex_rgba: np.ndarray, src: np.ndarray, dst: np.ndarray, side: int) -> np.ndarray:
    """Piecewise-affine warp of a (TEX,TEX,4) float32 texture: mesh `src` (texture px) → `dst` (frame px).

    Backward mapping: every frame pixel finds its destination triangle (rasterised index map), then the
    texture position through that triangle's affine map; one cv2.remap samples it bilinearly.
    """
    tri = triangles()
    idx = np.zeros((side, side), np.int32)
    d = np.round(dst * 16).astype(np.int32)
    for k, t in enumerate(tri):
        cv2.fillConvexPoly(idx, d[t], k + 1, lineType=cv2.LINE_8, shift=4)
    # affine map dst→src per triangle, closed form: L = F E^-1 with E, F the triangles' edge matrices
    d, sr = dst[tri].astype(np.float64), src[tri].astype(np.float64)  # (K,3,2)
    e1, e2 = d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]
    f1, f2 = sr[:, 1] - sr[:, 0], sr[:, 2] - sr[:, 0]
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    inv = np.where(np.abs(det) > 1e-9, 1.0 / np.where(det == 0, 1, det), 0.0)
    # E^-1 = [[e2y, -e2x], [-e1y, e1x]] / det ; L = [f1 f2] @ E^-1
    l00 = (f1[:, 0] * e2[:, 1] - f2[:, 0] * e1[:, 1]) * inv
    l01 = (-f1[:, 0] * e2[:, 0] + f2[:, 0] * e1[:, 0]) * inv
    l10 = (f1[:, 1] * e2[:, 1] - f2[:, 1] * e1[:, 1]) * inv
    l11 = (-f1[:, 1] * e2[:, 0] + f2[:, 1] * e1[:, 0]) * inv
    t0 = sr[:, 0, 0] - l00 * d[:, 0, 0] - l01 * d[:, 0, 1]
    t1 = sr[:, 0, 1] - l10 * d[:, 0, 0] - l11 * d[:, 0, 1]
    coef = np.concatenate([np.zeros((1, 6)), np.stack([l00, l01, t0, l10, l11, t1], 1)]).astype(np.float32)  # row 0: no triangle
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    c = coef[idx]  # (side, side, 6)
    mx = c[..., 0] * xs + c[..., 1] * ys + c[..., 2]
    my = c[..., 3] * xs + c[..., 4] * ys + c[..., 5]
    mx[idx == 0] = -10
    my[idx == 0] = -10
    return cv2.remap(tex_rgba, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))


# --------------------------------------------------------------------------------------------- painting
def _poly(img: np.ndarray, pts: np.ndarray, colour, aa: bool = True) -> None:
    cv2.fillPoly(img, [np.round(np.asarray(pts) * 16).astype(np.int32)], colour, lineType=cv2.LINE_AA if aa else cv2.LINE_8, shift=4)


def paint_mouth(canvas: np.ndarray, lm: np.ndarray, look: Look) -> None:
    """Dark oral cavity, upper and lower teeth, tongue — inside the inner-lip polygon (frame coords)."""
    inner = lm[60:68]
    h = max(lm[66, 1] - lm[62, 1], 0.0)
    if h < 0.3:
        return
    x0, y0 = np.floor(inner.min(0)).astype(int) - 2
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 3
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, canvas.shape[1]), min(y1, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    off = np.array([x0, y0], np.float64)
    roi = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    mask = np.zeros(roi.shape[:2], np.float32)
    c = inner.mean(0) - off
    grown = c + (inner - off - c) * 1.08
    _poly(mask, grown, 1.0)
    roi[:] = (52, 14, 20)
    w = lm[64, 0] - lm[60, 0]
    teeth_h = min(0.22 * w, 0.5 * h + 0.5)
    upper = lm[[60, 61, 62, 63, 64]] - off
    _poly(roi, np.concatenate([upper, (upper + [0, teeth_h])[::-1]]), look.teeth_rgb)
    if h > 0.35 * w:  # lower teeth show only when the jaw is well open
        lower = lm[[64, 65, 66, 67, 60]] - off
        _poly(roi, np.concatenate([lower, (lower - [0, 0.12 * w])[::-1]]), tuple(0.85 * np.array(look.teeth_rgb)))
    tongue_c = ((lm[66] - off) + np.array([0, -0.18 * h]))
    cv2.ellipse(roi, (int(tongue_c[0] * 16), int(tongue_c[1] * 16)), (int(0.3 * w * 16), int(0.3 * h * 16)), 0, 180, 360,
                look.tongue_rgb, -1, cv2.LINE_AA, 4)
    roi = cv2.GaussianBlur(roi, (0, 0), 0.6)
    sub = canvas[y0:y1, x0:x1]
    sub[:] = sub * (1 - mask[..., None]) + roi * mask[..., None]


def paint_body(canvas: np.ndarray, lm: np.ndarray, skin: np.ndarray, look: Look, torso_dx: float) -> np.ndarray:
    """Neck and clothed shoulders below the head; returns their coverage mask (for lighting)."""
    side = canvas.shape[0]
    cover = np.zeros(canvas.shape[:2], np.float32)
    jaw_w = np.linalg.norm(lm[16] - lm[0])
    chin = lm[8]
    neck_w = 0.62 * jaw_w
    ncx = (lm[5, 0] + lm[11, 0]) / 2
    top = (lm[3, 1] + lm[13, 1]) / 2
    shoulder_y = chin[1] + 0.12 * jaw_w
    neck = np.array([[ncx - neck_w / 2, top], [ncx + neck_w / 2, top], [ncx + neck_w / 2 * 1.1, shoulder_y + 0.2 * jaw_w],
                     [ncx - neck_w / 2 * 1.1, shoulder_y + 0.2 * jaw_w]])
    _poly(canvas, neck, tuple(float(v) for v in skin * 0.82))
    _poly(cover, neck, 1.0)
    bx = side / 2 + torso_dx * 0.6 + (ncx - side / 2) * 0.5
    sw = 1.6 * jaw_w
    t = np.linspace(np.pi, 2 * np.pi, 21)
    arc = np.stack([bx + sw * np.cos(t), shoulder_y + 0.3 * jaw_w + 0.32 * jaw_w * np.sin(t)], 1)
    torso = np.concatenate([[[bx - 1.9 * jaw_w, side * 1.5]], arc, [[bx + 1.9 * jaw_w, side * 1.5]]])
    _poly(canvas, torso, look.clothing_rgb)
    _poly(cover, torso, 1.0)
    neck_v = [[ncx - neck_w * 0.55, shoulder_y], [ncx + neck_w * 0.55, shoulder_y]]
    if look.collar == 1:
        _poly(canvas, np.array(neck_v + [[ncx, shoulder_y + 0.55 * jaw_w]]), tuple(float(v) for v in skin * 0.78))
    elif look.collar == 2:
        dark = tuple(float(v) * 0.75 for v in look.clothing_rgb)
        for sgn in (-1, 1):
            _poly(canvas, np.array([[ncx + sgn * neck_w * 0.55, shoulder_y - 0.02 * jaw_w], [ncx, shoulder_y + 0.3 * jaw_w],
                                    [ncx + sgn * neck_w * 0.95, shoulder_y + 0.2 * jaw_w]]), (238, 238, 236))
            cv2.line(canvas, (int(ncx * 16), int((shoulder_y + 0.3 * jaw_w) * 16)), (int(ncx * 16), int(side * 16)), dark, max(1, side // 128), cv2.LINE_AA, 4)
    else:
        _poly(canvas, np.array(neck_v + [[ncx + neck_w * 0.4, shoulder_y + 0.15 * jaw_w], [ncx - neck_w * 0.4, shoulder_y + 0.15 * jaw_w]]),
              tuple(float(v) for v in skin * 0.8))
    return cover


def shading(side: int, centre: np.ndarray, radius: float, look: Look) -> np.ndarray:
    """Per-pixel light (side, side, 3): ambient + Lambert on a sphere around the head, tinted by the light."""
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    u = (xs - centre[0]) / radius
    v = (ys - centre[1]) / radius
    nz = np.sqrt(np.clip(1 - u * u - v * v, 0.05, 1))
    lx, ly = look.light_dir
    lz = 0.8
    n = np.sqrt(lx * lx + ly * ly + lz * lz)
    lam = np.clip((-u * lx - v * ly + nz * lz) / n / np.sqrt(u * u + v * v + nz * nz), 0, 1)
    k = look.ambient + (1 - look.ambient) * 1.25 * lam
    return k[..., None] * np.asarray(look.light_rgb, np.float32)


def render_frame(portrait: Portrait, lm_neutral: np.ndarray, tex_rgba: np.ndarray, pose: Pose, look: Look,
                 background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame at the background's size: (rgb float32 0..255, landmarks (68,2) in frame px)."""
    side = background.shape[0]
    lm_c = express(lm_neutral, pose)
    src = np.concatenate([portrait.landmarks, anchor_ring()]).astype(np.float64)
    dst = place(np.concatenate([lm_c, anchor_ring()]), lm_neutral, pose, look, side)
    lm = dst[:68]
    canvas = background.astype(np.float32).copy()
    person = paint_body(canvas, lm, portrait.skin, look, pose.dx * side / 128.0)
    paint_mouth(canvas, lm, look)
    head = warp(tex_rgba, src, dst, side)
    a = head[..., 3:4]
    canvas = canvas * (1 - a) + head[..., :3] * a
    person = np.maximum(person, a[..., 0])
    # mouth interior belongs to the person too (it sits under the head layer's hole)
    inner = np.zeros((side, side), np.float32)
    _poly(inner, lm[60:68], 1.0)
    person = np.maximum(person, inner)
    head_c = lm[27:36].mean(0)
    light = shading(side, head_c, 1.6 * np.linalg.norm(lm[16] - lm[0]), look)
    bg_light = np.asarray(look.light_rgb, np.float32) * (0.55 + 0.45 * look.ambient + 0.2)
    lit = canvas * (person[..., None] * light + (1 - person[..., None]) * bg_light)
    return np.clip(lit, 0, 255), lm.astype(np.float32)


def texture_rgba(portrait: Portrait) -> np.ndarray:
    return np.concatenate([portrait.rgb.astype(np.float32), portrait.alpha[..., None].astype(np.float32)], 2)


def face_box(lm: np.ndarray) -> list[float]:
    """Ground-truth face box from landmarks, shaped like a detector's: jaw width, brows (+ margin) to chin."""
    x0, x1 = float(lm[:17, 0].min()), float(lm[:17, 0].max())
    top = float(lm[17:27, 1].min())
    y1 = float(lm[:, 1].max())
    y0 = top - 0.12 * (y1 - top)
    return [round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)]
