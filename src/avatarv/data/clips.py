"""One talking clip: speech → mouth track → per-frame poses → rendered frames, with all ground truth.

The pieces (speech.py, visemes.py, motion_style.py, scenes.py, render.py) meet here; distractors.py then edits
a finished clip. Frames are rendered at twice the output size and area-downsampled, which anti-aliases the
warp seams and the painted mouth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import scenes
from .identities import Identity, stable_seed
from .motion_style import animate, stressed_onsets
from .render import Look, Pose, close_mouth, face_box, render_frame, texture_rgba
from .sentences import sentence
from .speech import frame_energy, synthesize
from .visemes import mouth_track


@dataclass
class ClipData:
    frames: np.ndarray  # (T, S, S, 3) uint8
    audio: np.ndarray | None  # float32 mono, None = no audio stream
    sample_rate: int
    fps: int
    text: str
    phonemes: list[dict]
    landmarks: list[np.ndarray | None]  # per frame (68,2) output px, None = no face
    boxes: list[list[float]]
    poses: list[Pose]
    flags: dict = field(default_factory=dict)
    av_offset_frames: int = 0


@dataclass
class SpeechTrack:
    audio: np.ndarray
    text: str
    phonemes: list[dict]


def speak(ident: Identity, rng: np.random.Generator, n_samples: int, sample_rate: int) -> SpeechTrack:
    """Sentences in the identity's voice, joined by short pauses, until the clip is full; cut to length."""
    pieces: list[np.ndarray] = [np.zeros(int(rng.uniform(0.05, 0.3) * sample_rate), np.float32)]
    texts, phonemes = [], []
    t = len(pieces[0])
    while t < n_samples:
        text = sentence(rng, ident.language)
        sp = synthesize(text, ident.voice, ident.pitch, ident.speed, sample_rate)
        off = t / sample_rate
        phonemes += [{"ph": p["ph"], "start": round(p["start"] + off, 4), "end": round(p["end"] + off, 4)} for p in sp.phonemes]
        texts.append(text)
        pause = np.zeros(int(rng.uniform(0.15, 0.45) * sample_rate), np.float32)
        pieces += [sp.audio, pause]
        t += len(sp.audio) + len(pause)
    audio = np.concatenate(pieces)[:n_samples]
    audio = audio / max(1e-6, float(np.abs(audio).max())) * 0.7  # same loudness for every voice
    dur = n_samples / sample_rate
    phonemes = [dict(p, end=min(p["end"], dur)) for p in phonemes if p["start"] < dur]
    return SpeechTrack(audio.astype(np.float32), " ".join(texts), phonemes)


def scene_setup(ident: Identity, scene: int, seed: int, side: int) -> tuple[np.ndarray, Look, str]:
    """Background, look and backdrop kind of (identity, scene): the same for every clip of that scene."""
    rng = np.random.default_rng(stable_seed(seed, ident.identity, "scene", scene))
    bg, kind = scenes.background(rng, side)
    return bg, scenes.look(rng, ident.teeth_rgb, ident.tongue_rgb), kind


def poses_for(ident: Identity, speech: SpeechTrack, n_frames: int, fps: int, sample_rate: int, rng) -> list[Pose]:
    mo, mw = mouth_track(speech.phonemes, n_frames, fps)
    energy = frame_energy(speech.audio, sample_rate, fps, n_frames)
    stresses = stressed_onsets(speech.phonemes, energy, fps)
    return animate(ident.style, mo, mw, stresses, fps, rng)


def render_frames(ident: Identity, poses: list[Pose], look: Look, bg: np.ndarray, size: int,
                  face: Identity | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Frames (T, size, size, 3) uint8 and landmarks in output px. `face` swaps in another person's face
    (wrong-identity distractor) while keeping this identity's motion and scene."""
    who = face or ident
    p = who.portrait
    lm0 = close_mouth(p.landmarks)
    tex = texture_rgba(p)
    side = bg.shape[0]
    frames, lms = [], []
    for pose in poses:
        img, lm = render_frame(p, lm0, tex, pose, look, bg)
        if side != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            lm = lm * (size / side)
        frames.append(np.round(img).astype(np.uint8))
        lms.append(lm)
    return np.stack(frames), lms


def make_clip(ident: Identity, scene: int, clip_seed: int, scene_seed: int, *, n_frames: int, size: int, fps: int,
              sample_rate: int) -> ClipData:
    """A clean clip: one identity speaking in one of its scenes."""
    rng = np.random.default_rng(clip_seed)
    n_samples = int(round(n_frames * sample_rate / fps))
    speech = speak(ident, rng, n_samples, sample_rate)
    poses = poses_for(ident, speech, n_frames, fps, sample_rate, rng)
    bg, look, kind = scene_setup(ident, scene, scene_seed, 2 * size)
    frames, lms = render_frames(ident, poses, look, bg, size)
    return ClipData(
        frames=frames, audio=speech.audio, sample_rate=sample_rate, fps=fps, text=speech.text, phonemes=speech.phonemes,
        landmarks=list(lms), boxes=[face_box(lm) for lm in lms], poses=poses, flags={"background": kind},
    )
