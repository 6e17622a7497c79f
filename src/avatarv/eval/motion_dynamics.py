"""Head-motion dynamics and their match to the reference person's motion style (seed: "faithfully reproduce a
specific person's talking rhythm ... and gestural tendencies"; human-aligned metrics after THEval).

From per-frame 68-point landmarks: head position = nose tip, in inter-ocular units (scale-free), roll from the
eye line, yaw from the nose offset between the jaw edges. Energy = mean speed (units/s); a style vector of
simple statistics (sway spread, roll/yaw spread, energy, dominant sway frequency, mouth-opening spread) is
compared to the reference's with a ratio similarity in [0, 1] (1 = same statistics).
"""

from __future__ import annotations

import numpy as np

from ..faces import head_yaw_proxy, mouth_opening

STYLE_KEYS = ("sway_x", "sway_y", "roll_std", "yaw_std", "energy", "sway_freq", "mouth_std")


def head_signals(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    lm = np.asarray(landmarks, np.float32).reshape(-1, 68, 2)
    le, re = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    iod = np.maximum(np.linalg.norm(re - le, axis=1), 1e-3)
    unit = np.median(iod)
    nose = lm[:, 30]
    return {
        "x": nose[:, 0] / unit, "y": nose[:, 1] / unit,
        "roll": np.degrees(np.arctan2(re[:, 1] - le[:, 1], re[:, 0] - le[:, 0])),
        "yaw": np.array([head_yaw_proxy(f) for f in lm]),
        "mouth": np.array([mouth_opening(f) for f in lm]),
    }


def _dominant_freq(x: np.ndarray, fps: float) -> float:
    x = x - x.mean()
    if len(x) < 8 or x.std() < 1e-6:
        return 0.0
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / fps)
    spec[0] = 0
    return float(freqs[int(np.argmax(spec))])


def motion_stats(landmarks: np.ndarray, fps: float = 25.0) -> dict[str, float]:
    s = head_signals(landmarks)
    pos = np.stack([s["x"], s["y"]], 1)
    speed = np.linalg.norm(np.diff(pos, axis=0), axis=1) * fps if len(pos) > 1 else np.zeros(1)
    return {
        "sway_x": float(s["x"].std()), "sway_y": float(s["y"].std()),
        "roll_std": float(s["roll"].std()), "yaw_std": float(s["yaw"].std()),
        "energy": float(speed.mean()), "sway_freq": _dominant_freq(s["x"], fps),
        "mouth_std": float(s["mouth"].std()),
    }


def style_similarity(a: dict[str, float], b: dict[str, float], floor: float = 1e-3) -> float:
    """Mean over style statistics of min/max ratio: 1 when equal, → 0 when one is far larger."""
    r = []
    for k in STYLE_KEYS:
        x, y = abs(a[k]) + floor, abs(b[k]) + floor
        r.append(min(x, y) / max(x, y))
    return float(np.mean(r))


def mesh_style(frames: np.ndarray, fps: float = 25.0) -> dict[str, float] | None:
    """The project's motion-stream style (models/motion.py: MediaPipe face mesh → 16-D motion → style stats:
    sway, nods, blinks, mouth scale, brows, expression), or None when no face mesh is found. This is the same
    representation the generator is conditioned on, so the score speaks the model's own motion language."""
    from ..models.motion import extract_motion, motion_style_stats

    motion = extract_motion(np.asarray(frames, np.uint8))
    if not np.abs(motion).any():
        return None
    return motion_style_stats(motion, fps)


def mesh_style_similarity(a: dict[str, float] | None, b: dict[str, float] | None) -> float:
    if a is None or b is None:
        return float("nan")
    from ..models.motion import motion_style_similarity

    return motion_style_similarity(a, b)
