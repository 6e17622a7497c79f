"""Mouth-region quality and lip–audio agreement (human-aligned metrics after THEval; seed: lip sync quality).

- mouth_sharpness: variance of the Laplacian of the grey mouth crop at a fixed 64x48 size (blurry, smeared
  mouths are the typical talking-head artefact; the fixed size makes it comparable across resolutions).
- teeth_visibility: share of frames where bright, low-saturation pixels fill ≥ 3 % of the inner-lip polygon
  (generators often paint a dark hole instead of teeth).
- lip_audio_corr: Pearson correlation of the landmark mouth opening with the per-frame audio RMS, best over
  lags within ±2 frames (a landmark-level sync check independent of the learned experts).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..faces import crop_resize, mouth_opening


def _mouth_rect(lm: np.ndarray, pad: float = 0.35) -> np.ndarray:
    m = lm[48:68]
    x0, y0 = m.min(0)
    x1, y1 = m.max(0)
    w = max(x1 - x0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = w * (0.5 + pad), w * (0.5 + pad) * 0.75
    return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h], np.float32)


def mouth_sharpness(frames: np.ndarray, landmarks: np.ndarray, indices: np.ndarray) -> float:
    vals = []
    for i, lm in zip(indices, landmarks):
        crop = crop_resize(frames[int(i)], _mouth_rect(lm), (64, 48))
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
        vals.append(cv2.Laplacian(grey, cv2.CV_32F).var())
    return float(np.mean(vals)) if vals else float("nan")


def teeth_fraction(frame: np.ndarray, lm: np.ndarray, scale: int = 4) -> float:
    """Share of inner-mouth pixels that look like teeth (HSV: V > 0.65, S < 0.3), on an upscaled crop."""
    rect = _mouth_rect(lm)
    size = (64 * scale // 2, 48 * scale // 2)
    crop = crop_resize(frame, rect, size)
    sx, sy = size[0] / (rect[2] - rect[0]), size[1] / (rect[3] - rect[1])
    poly = ((lm[60:68] - rect[:2]) * [sx, sy]).round().astype(np.int32)
    mask = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(mask, [poly], 1)
    if mask.sum() < 4:
        return 0.0
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV).astype(np.float32) / [180, 255, 255]
    teeth = (hsv[..., 2] > 0.65) & (hsv[..., 1] < 0.3)
    return float((teeth & (mask > 0)).sum() / mask.sum())


def teeth_visibility(frames: np.ndarray, landmarks: np.ndarray, indices: np.ndarray, min_frac: float = 0.03) -> float:
    fr = [teeth_fraction(frames[int(i)], lm) for i, lm in zip(indices, landmarks)]
    return float(np.mean([f >= min_frac for f in fr])) if fr else float("nan")


def audio_rms_per_frame(audio: np.ndarray, sample_rate: int, n_frames: int, fps: float = 25.0) -> np.ndarray:
    hop = sample_rate / fps
    out = np.zeros(n_frames, np.float32)
    for i in range(n_frames):
        seg = audio[int(i * hop) : int((i + 1) * hop)]
        out[i] = float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0
    return out


def lagged_corr(x: np.ndarray, y: np.ndarray, max_lag: int = 2) -> tuple[float, int]:
    """Best Pearson r of x[t] with y[t + lag] over |lag| ≤ max_lag, and that lag."""
    best = (float("nan"), 0)
    for lag in range(-max_lag, max_lag + 1):
        a = x[max(0, -lag) : len(x) - max(0, lag)]
        b = y[max(0, lag) : len(y) - max(0, -lag)]
        n = min(len(a), len(b))
        if n < 3 or a[:n].std() < 1e-8 or b[:n].std() < 1e-8:
            continue
        r = float(np.corrcoef(a[:n], b[:n])[0, 1])
        if np.isnan(best[0]) or r > best[0]:
            best = (r, lag)
    return best


def mouth_metrics(frames: np.ndarray, audio: np.ndarray, sample_rate: int, landmarks: np.ndarray, fps: float = 25.0,
                  n_quality_frames: int = 8) -> dict:
    """All mouth metrics of one clip from its per-frame landmarks (T, 68, 2)."""
    t = len(landmarks)
    idx = np.unique(np.linspace(0, t - 1, min(n_quality_frames, t)).round().astype(int))
    opening = np.array([mouth_opening(lm) for lm in landmarks], np.float32)
    r, lag = lagged_corr(opening, audio_rms_per_frame(audio, sample_rate, t, fps)) if len(audio) else (float("nan"), 0)
    return {
        "mouth_sharpness": mouth_sharpness(frames, landmarks[idx], idx),
        "teeth_visibility": teeth_visibility(frames, landmarks[idx], idx),
        "lip_audio_corr": r,
        "lip_audio_lag": lag,
        "mouth_open_mean": float(opening.mean()),
        "mouth_open_std": float(opening.std()),
    }
