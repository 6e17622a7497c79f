"""The per-frame motion stream (seed: "motion representation predicted jointly and fed back, person's style").

One 16-D vector per video frame (COMMON.md contract):
  [yaw/30, pitch/30, roll/30, dx/20, dy/20, mouth_open, mouth_width, blink, brow, e0..e6]
Sources: corpus ground truth (`motion_from_manifest_row`) or any video (`extract_motion`, MediaPipe FaceMesh,
offline). Both sources go through the same 68-point geometry (`landmark_features`; MediaPipe's 478 points are
mapped onto the dlib 68-point layout) so mouth, blink, brow and the 7 expression coefficients mean the same thing.
The expression coefficients are a fixed linear basis of normalised landmark offsets (smile, mouth asymmetry,
upper-lip raise, jaw drop, eye asymmetry, brow asymmetry, jaw shift), centred on the clip median (deviation from
the person's neutral face in this clip). `motion_style_stats` summarises a stream into the person's motion style
(sway energy and frequency, nod rate, blink rate, mouth scale ...) and `motion_style_similarity` compares two.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

MOTION_DIM = 16
N_EXPR = 7
CHANNELS = ["yaw", "pitch", "roll", "dx", "dy", "mouth_open", "mouth_width", "blink", "brow"] + [
    f"expr{i}" for i in range(N_EXPR)]
POSE_SCALE, SHIFT_SCALE = 30.0, 20.0

# MediaPipe FaceMesh index for each dlib 68-point landmark (jaw, brows, nose, eyes, outer lips, inner lips).
MP_TO_68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
])

# Calibration of the 0..1 channels from normalised geometry (distances are in inter-ocular units).
MOUTH_GAP_FULL = 0.45  # inner-lip gap at mouth_open = 1 (corpus landmarks: gap/IOD = 0.45 * mouth_open)
MOUTH_WIDTH_RANGE = (0.75, 1.25)  # corner distance at mouth_width = 0 and 1
BROW_RANGE = (0.25, 0.55)  # brow height above the eye centre at brow = 0 and 1
BLINK_CLOSED_FRAC = 0.25  # eye aspect ratio at full closure, as a fraction of the clip's open-eye EAR
EXPR_SCALE = 10.0  # normalised offsets of ~0.1 inter-ocular -> coefficient ~1
# MediaPipe-only calibration, fitted on corpus clips against their ground truth (one clip per identity, 10 ids):
MP_OUTER_LIP_FULL = 0.37  # outer-lip height above the clip's closed-mouth level (IOD units) at mouth_open = 1
MP_YAW_GAIN = 2.0  # the face-normal yaw of FaceMesh's flat z under-reads the head turn ~2x
MP_PITCH_PER_IOD = 0.196  # nose-tip drop below the eye line (IOD units) per unit of pitch/30
MP_SHIFT_GAIN = (1.1, 1.5)  # eye-midpoint motion (px) per px of head shift (rotation adds to it)

# MediaPipe indices spanning the face for the 3-D head frame: eye outer corners (right, left), forehead, chin.
_MP_EYE_R, _MP_EYE_L, _MP_FOREHEAD, _MP_CHIN = 33, 263, 10, 152


# --------------------------------------------------------------------------------------------- geometry
def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


def _eye_aspect_ratio(eye: np.ndarray) -> np.ndarray:
    """(T, 6, 2) dlib eye points -> (T,) vertical/horizontal opening."""
    return (_dist(eye[:, 1], eye[:, 5]) + _dist(eye[:, 2], eye[:, 4])) / (2.0 * _dist(eye[:, 0], eye[:, 3]) + 1e-6)


def _derotate(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate each frame so the eye line is horizontal, centre it on the eye midpoint and scale to unit IOD.

    Returns (normalised (T,68,2) with y pointing DOWN as in images, roll in degrees, inter-ocular distance px)."""
    right_eye, left_eye = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)  # subject's right eye is on the image left
    d = left_eye - right_eye
    roll = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    iod = np.linalg.norm(d, axis=1) + 1e-6
    c, s = np.cos(np.radians(-roll)), np.sin(np.radians(-roll))
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (T,2,2)
    centred = lm - ((right_eye + left_eye) / 2)[:, None]
    return np.einsum("tij,tkj->tki", rot, centred) / iod[:, None, None], roll, iod


def landmark_features(lm68: np.ndarray) -> dict[str, np.ndarray]:
    """(T, 68, 2) pixel landmarks -> per-frame mouth_open, mouth_width, blink, brow, roll (deg), expr (T, 7)."""
    n, roll, _ = _derotate(np.asarray(lm68, dtype=np.float64))
    gap = n[:, 66, 1] - n[:, 62, 1]
    width = _dist(n[:, 48], n[:, 54])
    ear_r, ear_l = _eye_aspect_ratio(n[:, 36:42]), _eye_aspect_ratio(n[:, 42:48])
    ear = (ear_r + ear_l) / 2
    ear_open = max(float(np.percentile(ear, 90)), 1e-3)
    blink = (ear_open - ear) / ((1.0 - BLINK_CLOSED_FRAC) * ear_open)
    brow_r = -(n[:, 17:22, 1].mean(1) - n[:, 36:42, 1].mean(1))
    brow_l = -(n[:, 22:27, 1].mean(1) - n[:, 42:48, 1].mean(1))
    brow = ((brow_r + brow_l) / 2 - BROW_RANGE[0]) / (BROW_RANGE[1] - BROW_RANGE[0])
    lip_mid_y = (n[:, 62, 1] + n[:, 66, 1]) / 2
    raw = np.stack([
        lip_mid_y - (n[:, 48, 1] + n[:, 54, 1]) / 2,  # smile: corners above the lip centre
        n[:, 54, 1] - n[:, 48, 1],  # mouth asymmetry
        n[:, 51, 1] - n[:, 33, 1],  # upper lip below the nose base
        n[:, 8, 1] - n[:, 57, 1],  # chin below the lower lip (jaw drop)
        ear_r - ear_l,  # eye asymmetry (wink)
        brow_r - brow_l,  # brow asymmetry
        n[:, 8, 0] - n[:, 30, 0],  # jaw lateral shift
    ], axis=1)
    expr = (raw - np.median(raw, axis=0, keepdims=True)) * EXPR_SCALE
    return {
        "mouth_open": np.clip(gap / MOUTH_GAP_FULL, 0.0, 1.0),
        "mouth_width": np.clip((width - MOUTH_WIDTH_RANGE[0]) / (MOUTH_WIDTH_RANGE[1] - MOUTH_WIDTH_RANGE[0]), 0, 1),
        "blink": np.clip(blink, 0.0, 1.0),
        "brow": np.clip(brow, 0.0, 1.0),
        "roll": roll,
        "expr": expr,
    }


def head_pose_mesh(mesh: np.ndarray) -> np.ndarray:
    """(T, 478, 3) FaceMesh points in px (x right, y down, z away from camera) -> (T, 3) [yaw, pitch, roll] deg.

    Builds the head's frame from the eye line (x) and chin-to-forehead line (y) in 3-D; the face normal gives
    yaw (> 0: the face turns toward the image right) and pitch (> 0: the face tilts up); roll > 0 is a
    clockwise tilt in the image."""
    x_axis = mesh[:, _MP_EYE_L] - mesh[:, _MP_EYE_R]
    up = mesh[:, _MP_FOREHEAD] - mesh[:, _MP_CHIN]
    x_axis /= np.linalg.norm(x_axis, axis=1, keepdims=True) + 1e-9
    up = up - (up * x_axis).sum(1, keepdims=True) * x_axis
    up /= np.linalg.norm(up, axis=1, keepdims=True) + 1e-9
    normal = np.cross(x_axis, up)  # points from the face toward the camera (z < 0) when frontal
    yaw = np.degrees(np.arctan2(normal[:, 0], -normal[:, 2]))
    pitch = np.degrees(np.arctan2(normal[:, 1], -normal[:, 2]))
    roll = np.degrees(np.arctan2(x_axis[:, 1], x_axis[:, 0]))
    return np.stack([yaw, -pitch, roll], axis=1)


# --------------------------------------------------------------------------------------------- sources
def _fill_missing(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace rows of undetected frames by the nearest detected frame (zeros if none)."""
    if valid.all():
        return x
    if not valid.any():
        return np.zeros_like(x)
    idx = np.where(valid)[0]
    nearest = idx[np.abs(np.arange(len(x))[:, None] - idx[None, :]).argmin(1)]
    return x[nearest]


def _assemble(pose: np.ndarray, shift: np.ndarray, feats: dict[str, np.ndarray], mouth_open=None, mouth_width=None,
              blink=None, brow=None) -> np.ndarray:
    out = np.zeros((len(pose), MOTION_DIM), np.float32)
    out[:, 0:3] = pose / POSE_SCALE
    out[:, 3:5] = shift / SHIFT_SCALE
    out[:, 5] = feats["mouth_open"] if mouth_open is None else mouth_open
    out[:, 6] = feats["mouth_width"] if mouth_width is None else mouth_width
    out[:, 7] = feats["blink"] if blink is None else blink
    out[:, 8] = feats["brow"] if brow is None else brow
    out[:, 9:] = feats["expr"]
    return out


def per_frame(value: Any, width: int | None = None) -> np.ndarray:
    """A parquet list column (list / ndarray of arrays) -> float (T,) or (T, width); empty entries -> NaN."""
    rows = list(value)
    if width is None:
        return np.asarray(rows, dtype=np.float64)
    return np.asarray([list(r) if r is not None and len(r) == width else [np.nan] * width for r in rows], np.float64)


def motion_from_manifest_row(row: Any) -> np.ndarray:
    """A manifest.parquet row (dict or pandas Series) -> (T, 16) float32 motion from the corpus ground truth."""
    pose = per_frame(row["head_pose"], 3)
    shift = per_frame(row["head_shift"], 2)
    lm = per_frame(row["landmarks"], 136).reshape(-1, 68, 2)
    valid = np.isfinite(lm).all(axis=(1, 2))
    feats = landmark_features(_fill_missing(np.nan_to_num(lm), valid)) if valid.any() else None
    if feats is None:
        feats = {k: np.zeros(len(pose)) for k in ("mouth_open", "mouth_width", "blink", "brow")}
        feats["expr"] = np.zeros((len(pose), N_EXPR))
    gt = {k: per_frame(row[k]) for k in ("mouth_open", "mouth_width", "blink", "brow")}
    return _assemble(np.nan_to_num(pose), np.nan_to_num(shift), feats, **gt)


def face_mesh_landmarks(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T,H,W,3) uint8 RGB -> ((T, 478, 3) landmarks in px (z in px of width), (T,) detected) via MediaPipe."""
    import mediapipe as mp

    t, h, w, _ = frames.shape
    out = np.zeros((t, 478, 3), np.float64)
    valid = np.zeros(t, bool)
    from ..quiet import native_stderr_off

    with native_stderr_off(), mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3,
            min_tracking_confidence=0.3) as mesh:
        for i, frame in enumerate(frames):
            res = mesh.process(np.ascontiguousarray(frame))
            if res.multi_face_landmarks:
                pts = res.multi_face_landmarks[0].landmark
                out[i] = [(p.x * w, p.y * h, p.z * w) for p in pts]
                valid[i] = True
    return out, valid


def extract_motion(frames: np.ndarray, upscale_to: int = 256) -> np.ndarray:
    """(T,H,W,3) uint8 RGB video -> (T, 16) float32 motion via MediaPipe FaceMesh (offline).

    Small frames are upscaled first (FaceMesh is trained on >= 192 px crops). dx, dy (pixels of the INPUT
    frames) and pitch are relative to the clip's median; yaw and roll are absolute. Undetected frames copy the
    nearest detection. Gains are calibrated on the synthetic corpus' ground truth (constants above)."""
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"extract_motion: expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    scale = max(1.0, upscale_to / max(h, w))
    if scale > 1.0:
        size = (int(round(w * scale)), int(round(h * scale)))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames])
    mesh, valid = face_mesh_landmarks(frames)
    if not valid.any():
        return np.zeros((t, MOTION_DIM), np.float32)
    mesh = _fill_missing(mesh, valid)
    mesh /= scale
    lm68 = mesh[:, MP_TO_68, :2]
    feats = landmark_features(lm68)
    norm, roll, _ = _derotate(lm68)
    # FaceMesh's inner-lip points stick together on small or painted mouths; the outer-lip height above the
    # clip's closed-mouth level follows the opening better (corpus: corr 0.91 vs 0.86 for the inner gap).
    outer = norm[:, 57, 1] - norm[:, 51, 1]
    feats["mouth_open"] = np.clip((outer - np.percentile(outer, 5)) / MP_OUTER_LIP_FULL, 0.0, 1.0)
    nose_drop = norm[:, 30, 1]  # nose tip below the eye line: rises and falls with pitch
    pose = np.stack([
        head_pose_mesh(mesh)[:, 0] * MP_YAW_GAIN,
        (nose_drop - np.median(nose_drop)) / MP_PITCH_PER_IOD * POSE_SCALE,  # relative to the clip's median
        roll,
    ], axis=1)
    eyes = (lm68[:, 36:42].mean(1) + lm68[:, 42:48].mean(1)) / 2
    shift = (eyes - np.median(eyes, axis=0)) / np.asarray(MP_SHIFT_GAIN)
    return _assemble(pose, shift, feats)


def eye_track(measured: np.ndarray) -> np.ndarray:
    """(T, 16) `extract_motion` output (not calibrated) → (T, 2) the eye midpoint's track in pixels of the measured
    frames, about the clip median: the inverse of its dx/dy encoding."""
    return measured[:, 3:5] * SHIFT_SCALE * np.asarray(MP_SHIFT_GAIN, np.float32)


# --------------------------------------------------------------------------------------------- style
STYLE_FLOORS = {  # noise level of each statistic: differences below it do not count
    "sway_energy": 0.02, "sway_freq": 0.1, "nod_energy": 0.02, "nod_rate": 0.1, "blink_rate": 2.0,
    "mouth_scale": 0.05, "brow_energy": 0.02, "expr_energy": 0.05,
}


def _dominant_frequency(x: np.ndarray, fps: float) -> float:
    x = x - x.mean()
    if len(x) < 4 or np.allclose(x, 0):
        return 0.0
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1.0 / fps)
    spec[freqs < 0.05] = 0
    return float(freqs[int(spec.argmax())])


def motion_style_stats(motion: np.ndarray, fps: float = 25.0) -> dict[str, float]:
    """(T, 16) motion -> the person's motion style: sway energy/frequency, nods/s, blinks/min, mouth scale, ..."""
    from scipy.signal import find_peaks

    m = np.asarray(motion, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != MOTION_DIM:
        raise ValueError(f"motion_style_stats: expected (T, {MOTION_DIM}) motion, got {m.shape}")
    seconds = max(len(m) / fps, 1e-6)
    sway = m[:, 0] * POSE_SCALE  # yaw in degrees
    pitch = m[:, 1] * POSE_SCALE
    nods, _ = find_peaks(pitch - pitch.mean(), prominence=2.0)
    closed = m[:, 7] > 0.5
    blinks = int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])
    return {
        "sway_energy": float(np.sqrt(np.mean((m[:, 0] - m[:, 0].mean()) ** 2 + (m[:, 3] - m[:, 3].mean()) ** 2))),
        "sway_freq": _dominant_frequency(sway, fps),
        "nod_energy": float(m[:, 1].std()),
        "nod_rate": float(len(nods) / seconds),
        "blink_rate": float(blinks / seconds * 60.0),
        "mouth_scale": float(np.percentile(m[:, 5], 95)),
        "brow_energy": float(m[:, 8].std()),
        "expr_energy": float(m[:, 9:].std(axis=0).mean()),
    }


def motion_style_similarity(a: dict[str, float], b: dict[str, float]) -> float:
    """Similarity in [0, 1] of two style dicts: mean over shared keys of 1 - |a-b| / (|a| + |b| + floor)."""
    keys = [k for k in a if k in b]
    if not keys:
        raise ValueError("motion_style_similarity: the two style dicts share no statistic")
    scores = [1.0 - abs(a[k] - b[k]) / (abs(a[k]) + abs(b[k]) + STYLE_FLOORS.get(k, 1e-3)) for k in keys]
    return float(np.clip(np.mean(scores), 0.0, 1.0))


def style_from_manifest(row: Any) -> dict[str, float]:
    """The corpus' generating motion style (JSON in the `motion_style` column) as a dict."""
    return json.loads(row["motion_style"]) if isinstance(row["motion_style"], str) else dict(row["motion_style"])


def fit_motion_calibration(measured: list[np.ndarray], truth: list[np.ndarray]) -> dict:
    """Per-channel least-squares map from the motion measured on video (extract_motion, MediaPipe) to the motion the
    model was trained on (corpus ground truth): truth ≈ scale·measured + shift. The two disagree in offset and scale
    (e.g. yaw mean 0.72 vs 0.22, dx spread ×3.5 on a corpus clip), and a channel the extractor cannot see
    (correlation ≈ 0) gets scale ≈ 0, i.e. the training mean — better than feeding the model a foreign signal."""
    x = np.concatenate([np.asarray(m, np.float64)[: len(t)] for m, t in zip(measured, truth)])
    y = np.concatenate([np.asarray(t, np.float64)[: len(m)] for m, t in zip(measured, truth)])
    ok = np.isfinite(x).all(1) & np.isfinite(y).all(1)
    x, y = x[ok], y[ok]
    if len(x) < 2:
        raise ValueError("fit_motion_calibration: fewer than 2 frames with finite motion")
    xm, ym = x.mean(0), y.mean(0)
    var = ((x - xm) ** 2).mean(0)
    cov = ((x - xm) * (y - ym)).mean(0)
    scale = np.where(var > 1e-10, cov / np.maximum(var, 1e-10), 0.0)
    shift = ym - scale * xm
    sx, sy = np.sqrt(var), y.std(0)
    r = np.where((sx > 1e-8) & (sy > 1e-8), cov / np.maximum(sx * sy, 1e-12), 0.0)
    return {"scale": scale.round(6).tolist(), "shift": shift.round(6).tolist(), "r": r.round(4).tolist(),
            "n_frames": int(len(x))}


def apply_motion_calibration(motion: np.ndarray, calibration: dict | None) -> np.ndarray:
    """(T, 16) measured motion → the training representation (identity when calibration is None)."""
    if not calibration:
        return motion
    m = np.asarray(motion, np.float32)
    return (m * np.asarray(calibration["scale"], np.float32) + np.asarray(calibration["shift"], np.float32)).astype(np.float32)
