"""Talking-face fixtures for the eval tests: real package photos whose mouth opens with espeak-ng speech energy.

Each identity is one real face (see avatarv.eval.real_photos); a 'scene' changes framing, light and tint. The
mouth is a dark ellipse over the lips whose height follows the audio RMS per video frame, so lip motion and
audio are in sync by construction (a known answer for the sync metrics).
"""

from __future__ import annotations

import itertools
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from avatarv.eval.real_photos import package_face_photos
from avatarv.faces import crop_resize, landmarks_68
from avatarv.media import load_audio, write_video

TEXTS = [
    "The quick brown fox jumps over the lazy dog while we talk about avatars.",
    "Please read the numbers one two three four five six seven eight nine ten.",
    "A talking head model must move its lips in time with the spoken words.",
    "Every morning she walks to the market and buys fresh bread and apples.",
    "Open your mouth wide and say papa mama baba then stop and breathe.",
    "Evaluation without a harness is just a number nobody can check again.",
]


def speech(text: str, seconds: float, voice: str = "en-us", sr: int = 16000, speed: int = 160) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True, capture_output=True)
        audio, _ = load_audio(wav, sr)
    n = int(seconds * sr)
    audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
    return (0.8 * audio / max(1e-6, np.abs(audio).max())).astype(np.float32)


def frame_energy(audio: np.ndarray, n_frames: int, sr: int = 16000, fps=25) -> np.ndarray:
    """RMS of the audio under each video frame; `fps` may be fractional (30000/1001)."""
    if float(fps).is_integer() and sr % int(fps) == 0:
        hop = sr // int(fps)
        a = np.pad(audio, (0, max(0, n_frames * hop - len(audio))))[: n_frames * hop]
        return np.sqrt((a.reshape(n_frames, hop) ** 2).mean(1))
    edges = np.round(np.arange(n_frames + 1) * sr / float(fps)).astype(int)
    a = np.pad(audio, (0, max(0, edges[-1] - len(audio))))
    return np.array([np.sqrt((a[s:e] ** 2).mean()) for s, e in itertools.pairwise(edges)])


def talking_frames(identity: int, audio: np.ndarray, scene: int = 0, size: int = 96, fps=25,
                   sr: int = 16000, seed: int = 0) -> np.ndarray:
    """(T, size, size, 3) frames of package face `identity` speaking `audio` in `scene`, at `fps` (an int or a
    Fraction such as 30000/1001: the same speech and head motion sampled at another rate)."""
    photo = package_face_photos()[identity]
    lm = landmarks_68(photo.image, photo.box)
    n = int(len(audio) * fps // sr)
    e = frame_energy(audio, n, sr, fps)
    opening = np.clip(e / max(1e-6, np.percentile(e, 95)), 0, 1)
    rng = np.random.default_rng(seed + 100 * identity + scene)
    cx, cy = photo.box.center
    half = photo.box.width * (1.0 + 0.15 * scene)
    mouth_c = lm[60:68].mean(0)
    mouth_w = np.linalg.norm(lm[54] - lm[48])
    tint = np.array([1.0, 1.0, 1.0]) + 0.12 * np.array([np.cos(scene * 2.1), np.sin(scene * 1.3), np.cos(scene * 0.7)])
    phase = rng.uniform(0, 6.28)
    frames = []
    for i in range(n):
        img = photo.image.copy()
        a, b = (int(round(v)) for v in mouth_c)
        axes = (int(round(0.38 * mouth_w)), max(1, int(round(0.35 * mouth_w * opening[i]))))
        if opening[i] > 0.05:
            cv2.ellipse(img, (a, b), axes, 0, 0, 360, (40, 10, 15), -1, cv2.LINE_AA)
            if axes[1] > 3:  # upper teeth show when the mouth is open wide
                cv2.ellipse(img, (a, b - axes[1] // 2), (int(axes[0] * 0.7), max(1, axes[1] // 3)), 0, 180, 360,
                            (235, 235, 230), -1, cv2.LINE_AA)
        dx = 0.04 * half * np.sin(2 * np.pi * 0.4 * i / float(fps) + phase)
        dy = 0.02 * half * np.sin(2 * np.pi * 0.9 * i / float(fps) + 2 * phase)
        box = np.array([cx - half + dx, cy - half + dy, cx + half + dx, cy + half + dy], np.float32)
        frame = crop_resize(img, box, (size, size)).astype(np.float32) * tint
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


def make_clip(path: Path, identity: int, text_index: int, scene: int = 0, seconds: float = 4.0, size: int = 96,
              av_shift: int = 0, voice: str = "en-us") -> Path:
    """Write a talking mp4; `av_shift` > 0 delays the audio by that many video frames."""
    audio = speech(TEXTS[text_index % len(TEXTS)], seconds, voice)
    frames = talking_frames(identity, audio, scene, size)
    if av_shift:
        audio = shift_audio(audio, av_shift)
    return write_video(path, frames, 25, audio, 16000)


def shift_audio(audio: np.ndarray, frames: int, sr: int = 16000, fps: int = 25) -> np.ndarray:
    """Delay (frames > 0) or advance (< 0) the audio by whole video frames, keeping its length."""
    k = frames * sr // fps
    if k > 0:
        return np.concatenate([np.zeros(k, audio.dtype), audio[:-k]])
    if k < 0:
        return np.concatenate([audio[-k:], np.zeros(-k, audio.dtype)])
    return audio


def small_sync_expert(steps: int = 120):
    """(model, loss history) of a sync expert trained in seconds on 5 identities × 2 scenes of rendered speech."""
    import torch

    from avatarv.models.sync_expert import prepare
    from avatarv.train.sync_expert import train_sync_expert

    torch.set_num_threads(1)
    clips = []
    for ident in range(5):
        for scene in range(2):
            a = speech(TEXTS[(ident + 2 * scene) % len(TEXTS)], 4.0, voice=("en-us", "en-gb", "en-us+f3")[ident % 3])
            clips.append(prepare(talking_frames(ident, a, scene), a, 16000))
    return train_sync_expert(clips, steps=steps, batch_size=32, seed=0, progress=False)
