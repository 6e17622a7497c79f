"""Distractor clips: the faults the seed's curation cascade must catch, each with its ground truth in `flags`.

Kinds (the manifest contract): scene_cut, no_face, two_faces, av_offset, silence, noise_audio, blur, low_res,
truncated, no_audio, wrong_identity. Each starts from a clean clip of the labelled identity and breaks exactly
one thing, so a curation filter that rejects it is measurably right (precision/recall per kind).
"""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np

from .clips import ClipData, make_clip, poses_for, render_frames, scene_setup, speak
from .identities import Identity
from .render import Look, face_box

KINDS = ("scene_cut", "no_face", "two_faces", "av_offset", "silence", "noise_audio", "blur", "low_res", "truncated",
         "no_audio", "wrong_identity")
# kinds that change the file itself after encoding rather than its content
FILE_KINDS = ("truncated",)


def make_distractor(kind: str, ident: Identity, other: Identity, scene: int, clip_seed: int, scene_seed: int, *,
                    n_frames: int, size: int, fps: int, sample_rate: int) -> ClipData:
    """A clip of `ident` (labelled so in the manifest) broken in one way; `other` is the intruding person."""
    if kind not in KINDS:
        raise ValueError(f"unknown distractor kind {kind!r} (known: {', '.join(KINDS)})")
    kw = dict(n_frames=n_frames, size=size, fps=fps, sample_rate=sample_rate)
    rng = np.random.default_rng(clip_seed + 1)
    if kind in ("no_face", "two_faces", "wrong_identity", "scene_cut"):
        return _RENDERED[kind](ident, other, scene, clip_seed, scene_seed, rng, **kw)
    clip = make_clip(ident, scene, clip_seed, scene_seed, **kw)
    hop = sample_rate // fps
    if kind == "av_offset":
        k = int(rng.integers(3, 9))
        clip.audio = np.concatenate([np.zeros(k * hop, np.float32), clip.audio])[: len(clip.audio)]
        clip.phonemes = [dict(p, start=round(p["start"] + k / fps, 4), end=round(min(p["end"] + k / fps, n_frames / fps), 4))
                         for p in clip.phonemes if p["start"] + k / fps < n_frames / fps]
        clip.av_offset_frames = k
        clip.flags["audio_delay_s"] = k / fps
    elif kind == "silence":
        clip.audio = (rng.normal(0, 1e-4, len(clip.audio))).astype(np.float32)
        clip.flags["audio"] = "silence"
    elif kind == "noise_audio":
        white = rng.normal(0, 1, len(clip.audio) + 64)
        pink = np.convolve(white, np.exp(-np.arange(64) / 8.0), mode="valid")[: len(clip.audio)]
        clip.audio = (pink / pink.std() * 0.15).clip(-1, 1).astype(np.float32)
        clip.flags["audio"] = "noise"
    elif kind == "blur":
        sigma = size / 36
        clip.frames = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in clip.frames])
        clip.flags["blur_sigma_px"] = round(sigma, 3)
    elif kind == "low_res":
        small = max(16, (size // 4) // 2 * 2)
        clip.frames = np.stack([cv2.resize(f, (small, small), interpolation=cv2.INTER_AREA) for f in clip.frames])
        s = small / size
        clip.landmarks = [lm * s for lm in clip.landmarks]
        clip.boxes = [face_box(lm) for lm in clip.landmarks]
        clip.flags["downscale"] = round(1 / s, 3)
    elif kind == "no_audio":
        clip.audio = None
        clip.flags["has_audio"] = False
    elif kind == "truncated":
        clip.flags["keep_fraction"] = round(float(rng.uniform(0.25, 0.6)), 3)
    return clip


def _no_face(ident, other, scene, clip_seed, scene_seed, rng, *, n_frames, size, fps, sample_rate) -> ClipData:
    """The scene and the voice without anybody in front of the camera."""
    n_samples = int(round(n_frames * sample_rate / fps))
    speech = speak(ident, np.random.default_rng(clip_seed), n_samples, sample_rate)
    bg, look, kind = scene_setup(ident, scene, scene_seed, 2 * size)
    light = np.asarray(look.light_rgb, np.float32) * (0.75 + 0.45 * look.ambient)
    img = cv2.resize(np.clip(bg * light, 0, 255), (size, size), interpolation=cv2.INTER_AREA)
    frames = np.repeat(np.round(img).astype(np.uint8)[None], n_frames, 0)
    poses = poses_for(ident, speech, n_frames, fps, sample_rate, rng)
    for p in poses:  # nobody there: no mouth, no blink
        p.mouth_open = p.blink = p.brow = 0.0
    return ClipData(frames, speech.audio, sample_rate, fps, speech.text, speech.phonemes, [None] * n_frames,
                    [[] for _ in range(n_frames)], poses, flags={"background": kind})


def _two_faces(ident, other, scene, clip_seed, scene_seed, rng, *, n_frames, size, fps, sample_rate) -> ClipData:
    """The speaker shares the frame with a second, silent person (smaller framing for both)."""
    n_samples = int(round(n_frames * sample_rate / fps))
    speech = speak(ident, np.random.default_rng(clip_seed), n_samples, sample_rate)
    poses = poses_for(ident, speech, n_frames, fps, sample_rate, rng)
    bg, look, kind = scene_setup(ident, scene, scene_seed, 2 * size)
    left = rng.uniform() < 0.5
    look_a = dataclasses.replace(look, face_width=0.36, centre=(0.28 if left else 0.72, 0.42))
    look_b = dataclasses.replace(look, face_width=0.34, centre=(0.73 if left else 0.27, 0.44), light_rgb=(1.0, 1.0, 1.0),
                                 ambient=1.0, clothing_rgb=tuple(int(v) for v in rng.integers(30, 220, 3)))
    silent = poses_for(other, dataclasses.replace(speech, phonemes=[]), n_frames, fps, sample_rate, rng)
    side = bg.shape[0]
    frames_b, lms_b = render_frames(other, silent, look_b, bg, side)
    frames, lms, boxes_b = [], [], []
    for t in range(n_frames):
        f, lm = render_frames(ident, poses[t : t + 1], look_a, frames_b[t].astype(np.float32), size)
        frames.append(f[0])
        lms.append(lm[0])
        boxes_b.append([round(v * size / side, 2) for v in face_box(lms_b[t])])
    return ClipData(np.stack(frames), speech.audio, sample_rate, fps, speech.text, speech.phonemes, lms,
                    [face_box(lm) for lm in lms], poses,
                    flags={"background": kind, "second_identity": other.identity, "second_face_box_first": boxes_b[0],
                           "second_face_box_last": boxes_b[-1], "speaker_side": "left" if left else "right"})


def _wrong_identity(ident, other, scene, clip_seed, scene_seed, rng, *, n_frames, size, fps, sample_rate) -> ClipData:
    """Labelled as `ident` in `ident`'s scene with its voice and motion — but the face is `other`'s."""
    n_samples = int(round(n_frames * sample_rate / fps))
    speech = speak(ident, np.random.default_rng(clip_seed), n_samples, sample_rate)
    poses = poses_for(ident, speech, n_frames, fps, sample_rate, rng)
    bg, look, kind = scene_setup(ident, scene, scene_seed, 2 * size)
    frames, lms = render_frames(ident, poses, look, bg, size, face=other)
    return ClipData(frames, speech.audio, sample_rate, fps, speech.text, speech.phonemes, lms, [face_box(lm) for lm in lms],
                    poses, flags={"background": kind, "true_identity": other.identity})


def _scene_cut(ident, other, scene, clip_seed, scene_seed, rng, *, n_frames, size, fps, sample_rate) -> ClipData:
    """A hard cut mid-clip to another person in another setting (an edited video, not one continuous take)."""
    clip = make_clip(ident, scene, clip_seed, scene_seed, n_frames=n_frames, size=size, fps=fps, sample_rate=sample_rate)
    cut = int(rng.integers(n_frames // 3, 2 * n_frames // 3))
    second = make_clip(other, 0, clip_seed + 7, scene_seed, n_frames=n_frames - cut, size=size, fps=fps, sample_rate=sample_rate)
    clip.frames = np.concatenate([clip.frames[:cut], second.frames])
    clip.landmarks = clip.landmarks[:cut] + second.landmarks
    clip.boxes = clip.boxes[:cut] + second.boxes
    clip.poses = clip.poses[:cut] + second.poses
    clip.flags.update({"cut_frame": cut, "second_identity": other.identity})
    return clip


_RENDERED = {"no_face": _no_face, "two_faces": _two_faces, "wrong_identity": _wrong_identity, "scene_cut": _scene_cut}


def truncate_file(path, keep_fraction: float) -> int:
    """Cut an encoded mp4 to a prefix of its bytes (a download that broke off); returns the bytes kept."""
    size = os.path.getsize(path)
    keep = max(64, int(size * keep_fraction))
    os.truncate(path, keep)
    return keep


__all__ = ["FILE_KINDS", "KINDS", "Look", "make_distractor", "truncate_file"]
