"""Personal motion style: how one identity moves its head, eyes and brows while it talks.

The seed's personality stage (SFT on cross-scene pairs) should learn "how this person moves" from a reference
clip. So every identity draws a style once — head sway amplitude and frequency, nods on stressed syllables,
blink rate, brow raises, how wide it opens its mouth, roll, drift — distinct across people and stable across
its scenes; `animate` turns a style plus the speech timing into per-frame poses (render.Pose).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .render import Pose


@dataclass
class MotionStyle:
    sway_amp: float  # yaw amplitude (deg)
    sway_freq: float  # Hz
    nod_amp: float  # pitch pulse on stressed syllables (deg)
    nod_prob: float  # share of stressed syllables that get a nod
    roll_amp: float  # deg
    shift_amp: float  # lateral drift (px at 128 px frame)
    blink_rate: float  # blinks per minute
    brow_rate: float  # share of stressed syllables with a brow raise
    brow_amp: float  # 0..1
    mouth_scale: float  # multiplies the viseme opening
    tilt: float  # constant head roll bias (deg)
    gaze_yaw: float  # constant yaw bias (deg)

    def to_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def draw_style(rng: np.random.Generator) -> MotionStyle:
    """One identity's style; ranges are wide on purpose so styles are told apart (calm vs animated talkers)."""
    energy = rng.uniform(0, 1)  # a latent "animation" trait that several parameters share
    return MotionStyle(
        sway_amp=float(1.0 + 7.0 * energy * rng.uniform(0.6, 1.2)),
        sway_freq=float(rng.uniform(0.15, 0.6)),
        nod_amp=float(1.0 + 6.0 * rng.uniform(0.2, 1.0) * (0.4 + energy)),
        nod_prob=float(rng.uniform(0.2, 0.9)),
        roll_amp=float(rng.uniform(0.3, 3.5)),
        shift_amp=float(rng.uniform(0.0, 3.0) * (0.5 + energy)),
        blink_rate=float(rng.uniform(6, 30)),
        brow_rate=float(rng.uniform(0.0, 0.5)),
        brow_amp=float(rng.uniform(0.3, 1.0)),
        mouth_scale=float(rng.uniform(0.65, 1.15)),
        tilt=float(rng.normal(0, 2.5)),
        gaze_yaw=float(rng.normal(0, 3.0)),
    )


def _smooth_noise(rng: np.random.Generator, n: int, fps: int, cutoff_hz: float) -> np.ndarray:
    """Unit-variance low-pass noise (a Gaussian-filtered random walk) for natural, non-periodic drift."""
    x = rng.normal(size=n + 4 * fps)
    sigma = fps / (2 * np.pi * cutoff_hz)
    k = np.arange(-int(3 * sigma) - 1, int(3 * sigma) + 2)
    g = np.exp(-0.5 * (k / max(sigma, 1e-3)) ** 2)
    g = g / np.sqrt((g * g).sum())  # unit variance in expectation (a sample std would blow up short clips)
    y = np.convolve(x, g, mode="same")[2 * fps : 2 * fps + n]
    return np.clip(y, -2.5, 2.5)


def _pulses(times: np.ndarray, n: int, fps: int, width_s: float) -> np.ndarray:
    t = np.arange(n) / fps
    out = np.zeros(n)
    for c in times:
        out += np.exp(-0.5 * ((t - c - width_s) / width_s) ** 2)
    return np.clip(out, 0, 1.5)


def stressed_onsets(phonemes: list[dict], energy: np.ndarray, fps: int) -> np.ndarray:
    """Onset times of stressed syllables: vowels marked with espeak's stress, else the loudest vowels."""
    vowels = [p for p in phonemes if p["ph"][:1].lower() in "aeiou@3&0vy" or p["ph"][:1] in "AEIOUV"]
    marked = [p["start"] for p in vowels if p["ph"].startswith("'")]
    if marked:
        return np.array(marked)
    if not vowels:
        return np.zeros(0)
    loud = []
    for p in vowels:
        i = min(int(p["start"] * fps), len(energy) - 1)
        j = max(i + 1, min(int(p["end"] * fps) + 1, len(energy)))
        loud.append(float(energy[i:j].mean()) if i < len(energy) else 0.0)
    thr = np.quantile(loud, 0.65)
    return np.array([p["start"] for p, e in zip(vowels, loud) if e >= thr])


def animate(style: MotionStyle, mouth_open: np.ndarray, mouth_width: np.ndarray, stresses: np.ndarray, fps: int,
            rng: np.random.Generator) -> list[Pose]:
    """Per-frame poses for one clip: sway + drift + nods/brows on stresses + Poisson blinks + style-scaled lips."""
    n = len(mouth_open)
    t = np.arange(n) / fps
    phase = rng.uniform(0, 2 * np.pi)
    yaw = style.gaze_yaw + style.sway_amp * (0.7 * np.sin(2 * np.pi * style.sway_freq * t + phase)
                                             + 0.3 * _smooth_noise(rng, n, fps, 0.5))
    nods = stresses[rng.uniform(size=len(stresses)) < style.nod_prob] if len(stresses) else stresses
    pitch = style.nod_amp * _pulses(nods, n, fps, 0.12) + 0.8 * _smooth_noise(rng, n, fps, 0.4)
    roll = style.tilt + style.roll_amp * _smooth_noise(rng, n, fps, 0.3)
    dx = style.shift_amp * _smooth_noise(rng, n, fps, 0.25) + 0.15 * yaw
    dy = 0.4 * style.shift_amp * _smooth_noise(rng, n, fps, 0.3) + 0.25 * (pitch - pitch.mean())
    brows_at = stresses[rng.uniform(size=len(stresses)) < style.brow_rate] if len(stresses) else stresses
    brow = np.clip(style.brow_amp * _pulses(brows_at, n, fps, 0.18), 0, 1)
    blink = np.zeros(n)
    tb = rng.exponential(60.0 / style.blink_rate) * rng.uniform(0.2, 1.0)
    while tb < n / fps:
        blink = np.maximum(blink, np.clip(1 - np.abs(t - tb) / 0.09, 0, 1))  # ~180 ms lid closure
        tb += 0.25 + rng.exponential(60.0 / style.blink_rate)
    mo = np.clip(mouth_open * style.mouth_scale, 0, 1)
    return [
        Pose(yaw=float(yaw[i]), pitch=float(pitch[i]), roll=float(roll[i]), dx=float(dx[i]), dy=float(dy[i]),
             mouth_open=float(mo[i]), mouth_width=float(mouth_width[i]), blink=float(blink[i]), brow=float(brow[i]))
        for i in range(n)
    ]
