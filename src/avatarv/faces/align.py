"""The face-aligned working space: real footage in, the corpus's framing for the model, the source's frame out.

The generator only ever saw faces framed as the embedded corpus frames them (eyes at a fixed height, the face
about 70 % of a square frame); a landscape clip squashed into a square, or a wide photo with a small face, is
nothing it knows. So, as talking-head tools do:

1. `align_clip` finds the talking face (every face is tracked; several → the largest, said in `note`), puts 68
   dlib landmarks on it in every frame and fits, per frame, the similarity transform (scale, rotation, shift) that
   carries its eyes, nose and mouth corners onto the corpus's mean positions (`CANONICAL_POINTS`, measured over
   the corpus manifest's 14,400 frames). The transform is smoothed over time (Gaussian, `smooth_seconds`), so the
   crop follows the head slowly, like a static camera: head sway and nods stay in the crop, where the motion
   stream and the motion planner expect them, while detector jitter does not.
2. The model generates in that space (`AlignedClip.frames`, `side` × `side`).
3. `paste_back` warps each generated frame back with the inverse transform and blends it into the source frame
   through a feathered ellipse around the face, at the source's size.

A face too small for the working space, or none, is one `InputError` line naming the file, the size found and the
minimum. Used by the pipeline (`crop="face"`, the default for user footage) and the real-footage evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError
from .box import Box
from .detect import detect_faces
from .landmarks import five_points, landmarks_68
from .track import MIN_DETECT_SIDE, Track, link_detections

# Mean (left eye, right eye, nose tip, left / right mouth corner) over every corpus frame with a face, as a
# fraction of the square frame's side (data/corpus manifest landmarks → faces.five_points).
CANONICAL_POINTS = np.array([[0.349, 0.394], [0.635, 0.391], [0.482, 0.576], [0.364, 0.708], [0.648, 0.699]],
                            np.float32)
MIN_FACE_PX = 32  # face box side (px) below which landmarks, and so the alignment, stop being reliable
FEATHER = (0.50, 0.54, 0.40, 0.47)  # blend ellipse: centre x, y, half-axes x, y (fractions of the side)


@dataclass
class AlignedClip:
    """A clip in the working space, with what it takes to go back."""

    frames: np.ndarray  # (T, side, side, 3) uint8, the corpus's framing
    transforms: np.ndarray  # (T, 2, 3) float64: source px → working px
    source_size: tuple[int, int]  # (H, W) of the source frames
    face_side: float  # median face box side in the source (px)
    note: str = ""  # e.g. "3 faces; using the largest (212 px)"

    @property
    def side(self) -> int:
        return int(self.frames.shape[1])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2, 3) taking points `src` (N, 2) to `dst` (N, 2) (Umeyama, no
    reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    # complex form: dst ≈ z · src with z = s·e^{iθ}
    za, zb = a[:, 0] + 1j * a[:, 1], b[:, 0] + 1j * b[:, 1]
    z = np.vdot(za, zb) / max(np.vdot(za, za).real, 1e-12)
    m = np.array([[z.real, -z.imag, 0.0], [z.imag, z.real, 0.0]])
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def invert(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine transform."""
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def _params(m: np.ndarray) -> np.ndarray:
    """(log scale, angle, tx, ty) of a similarity transform: the coordinates in which smoothing is linear."""
    s = np.hypot(m[0, 0], m[1, 0])
    return np.array([np.log(s), np.arctan2(m[1, 0], m[0, 0]), m[0, 2], m[1, 2]])


def _matrix(p: np.ndarray) -> np.ndarray:
    s, th = np.exp(p[0]), p[1]
    return np.array([[s * np.cos(th), -s * np.sin(th), p[2]], [s * np.sin(th), s * np.cos(th), p[3]]])


def smooth_transforms(ms: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing of (T, 2, 3) similarity transforms over time (edges held), in (log s, θ, t) space."""
    if sigma_frames <= 0 or len(ms) < 2:
        return np.asarray(ms, np.float64)
    p = np.stack([_params(m) for m in ms])
    p[:, 1] = np.unwrap(p[:, 1])
    r = max(1, int(round(3 * sigma_frames)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_frames) ** 2)
    k /= k.sum()
    padded = np.pad(p, ((r, r), (0, 0)), mode="edge")
    q = np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(4)], 1)
    return np.stack([_matrix(x) for x in q])


def _detect(frame: np.ndarray) -> list[Box]:
    """Faces in one frame: MediaPipe's full-range model first (a face 10 % of a wide frame is beyond the short-range
    model's reach), then the short-range one, then dlib HOG."""
    for backend, kw in (("mediapipe", {"model_selection": 1}), ("mediapipe", {"model_selection": 0}), ("dlib", {})):
        boxes = detect_faces(frame, backend, **kw)
        if boxes:
            return boxes
    return []


def _talking_track(frames: np.ndarray, stride: int) -> tuple[Track | None, str]:
    """The largest tracked face (the talking head of a framed clip) and a note when there were several."""
    t, h, w = frames.shape[:3]
    scale = max(1.0, MIN_DETECT_SIDE / min(h, w))
    probe = frames if scale == 1 else np.stack([cv2.resize(f, (round(w * scale), round(h * scale)),
                                                           interpolation=cv2.INTER_CUBIC) for f in frames])
    per_frame = [(i, _detect(probe[i])) for i in range(0, t, max(1, stride))]
    tracks = link_detections(per_frame)
    if not tracks:
        return None, ""
    long = [tr for tr in tracks if len(tr) >= max(1, 0.3 * len(tracks[0]))]
    best = max(long, key=lambda tr: tr.mean_side)
    best = Track(best.frames, [Box(b.x0 / scale, b.y0 / scale, b.x1 / scale, b.y1 / scale, b.score) for b in best.boxes])
    note = f"{len(long)} faces; using the largest ({best.mean_side:.0f} px)" if len(long) > 1 else ""
    return best, note


def align_clip(frames: np.ndarray, side: int, *, fps: float = 25.0, smooth_seconds: float = 0.5, stride: int = 5,
               min_face: int = MIN_FACE_PX, source: str = "reference") -> AlignedClip:
    """(T, H, W, 3) uint8 footage → the clip in the working space (`side` px), with the transforms back."""
    frames = np.asarray(frames)
    t, h, w = frames.shape[:3]
    track, note = _talking_track(frames, stride)
    if track is None:
        raise InputError(source, f"no face found ({w}x{h} frames; a face of at least {min_face} px is needed)")
    boxes = track.coords_at(np.arange(t))
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    face_side = float(np.median(sides))
    if face_side < min_face:
        raise InputError(source, f"face too small: {face_side:.0f} px in {w}x{h} frames (minimum {min_face} px)")
    dst = CANONICAL_POINTS.astype(np.float64) * side
    ms = []
    for i in range(t):
        b = Box(*(float(v) for v in boxes[i]))
        ms.append(similarity(five_points(_landmarks(frames[i], b)), dst))
    ms = smooth_transforms(np.stack(ms), smooth_seconds * fps)
    out = np.stack([warp_to(frames[i], ms[i], side) for i in range(t)])
    return AlignedClip(out, ms, (h, w), face_side, note)


def _landmarks(frame: np.ndarray, box: Box) -> np.ndarray:
    """68 landmarks on a box; small faces are upscaled first (dlib's predictor drifts on faces under ~160 px)."""
    s = max(1.0, 160.0 / max(1.0, box.width))
    if s == 1.0:
        return landmarks_68(frame, box)
    big = cv2.resize(frame, (round(frame.shape[1] * s), round(frame.shape[0] * s)), interpolation=cv2.INTER_CUBIC)
    return landmarks_68(big, Box(box.x0 * s, box.y0 * s, box.x1 * s, box.y1 * s)) / s


def warp_to(frame: np.ndarray, m: np.ndarray, side: int) -> np.ndarray:
    """The working-space view of one source frame (area filtering when shrinking; borders replicate)."""
    shrink = np.hypot(m[0, 0], m[1, 0]) < 1.0
    return cv2.warpAffine(frame, m, (side, side), flags=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def feather_mask(side: int, softness: float = 0.08) -> np.ndarray:
    """(side, side) float32 in [0, 1]: 1 inside an ellipse over face and hair, falling off smoothly to 0."""
    cx, cy, ax, ay = FEATHER
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return np.clip((1.0 - r) / softness + 0.5, 0.0, 1.0).astype(np.float32)


def paste_back(generated: np.ndarray, background: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Blend working-space frames (T, s, s, 3) into source frames (T, H, W, 3) through the inverse transforms
    (source px → working px of side s; `rescale` converts from another side)."""
    generated, background = np.asarray(generated), np.asarray(background)
    if len(generated) != len(background) or len(transforms) != len(generated):
        raise ValueError(f"paste_back: {len(generated)} generated frames, {len(background)} backgrounds, "
                         f"{len(transforms)} transforms")
    h, w = background.shape[1:3]
    mask = feather_mask(generated.shape[1])
    out = np.empty_like(background)
    for i, (g, bg, m) in enumerate(zip(generated, background, transforms)):
        back = invert(np.asarray(m, np.float64))
        g_src = cv2.warpAffine(g, back, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        a = cv2.warpAffine(mask, back, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
        out[i] = np.clip(bg * (1 - a) + g_src * a + 0.5, 0, 255).astype(np.uint8)
    return out


def rescale(transforms: np.ndarray, from_side: int, to_side: int) -> np.ndarray:
    """The same framing for a working space of another size (e.g. the model's pixels vs the alignment's)."""
    return np.asarray(transforms, np.float64) * (to_side / from_side)


def loop_indices(n_source: int, n_out: int) -> np.ndarray:
    """Frame indices that play a source clip forwards, then backwards, ... for `n_out` frames (no jump cut)."""
    if n_source <= 1:
        return np.zeros(n_out, np.int64)
    period = 2 * (n_source - 1)
    k = np.arange(n_out) % period
    return np.where(k < n_source, k, period - k).astype(np.int64)
