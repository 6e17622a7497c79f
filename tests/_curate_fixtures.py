"""Tiny talking-head clips for curation tests, built without the corpus generator.

Real photos (skimage's astronaut, a face from insightface's group photo) with a dark mouth opening drawn each
frame in proportion to the loudness of real espeak-ng speech, so face detection, landmarks, embeddings, VAD and
the lip/audio cross-correlation all see what they would see in a talking clip. Distractors are derived from the
clean clip the way the corpus contract describes (cut, blur, offset audio, silence, noise, no audio, truncation).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import numpy as np

from avatarv.faces import detect_faces, landmarks_68
from avatarv.media import load_audio, write_video

FPS, SR, SIZE = 25, 16000, 128


@functools.lru_cache(maxsize=4)
def speech(seconds: float, text: str = "The quick brown fox jumps over the lazy dog. Hello there, how are you?") -> np.ndarray:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(wav), text], check=True, capture_output=True)
        audio, _ = load_audio(wav, SR)
    n = int(seconds * SR)
    return np.pad(audio, (0, max(0, n - audio.size)))[:n].astype(np.float32)


@functools.lru_cache(maxsize=4)
def portrait(who: str = "astronaut") -> np.ndarray:
    """A SIZE x SIZE RGB head-and-shoulders crop of a real photo."""
    import cv2

    if who == "astronaut":
        from skimage import data

        img = data.astronaut()
        crop = img[40:250, 115:325]
    elif who == "grace_hopper":  # matplotlib's sample portrait
        from matplotlib import cbook

        img = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))[..., ::-1]
        b = detect_faces(np.ascontiguousarray(img))[0]
        cx, cy = b.center
        half = int(b.width * 1.4)
        crop = img[max(0, int(cy - half)) : int(cy + half), max(0, int(cx - half)) : int(cx + half)]
    elif who == "hanks":  # insightface's aligned 112 px portrait, pasted on a plain backdrop
        import insightface

        img = cv2.imread(str(Path(insightface.__file__).parent / "data" / "images" / "Tom_Hanks_54745.png"))[..., ::-1]
        canvas = np.full((SIZE, SIZE, 3), (70, 90, 120), np.uint8)
        canvas[16:112, 16:112] = cv2.resize(np.ascontiguousarray(img), (96, 96), interpolation=cv2.INTER_AREA)
        return canvas
    else:  # one face of insightface's group photo, by index
        import insightface

        img = cv2.imread(str(Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"))[..., ::-1]
        b = detect_faces(img, "dlib")[int(who)]
        cx, cy = b.center
        half = int(b.width * 1.3)
        crop = img[max(0, int(cy - half)) : int(cy + half), max(0, int(cx - half)) : int(cx + half)]
    return cv2.resize(np.ascontiguousarray(crop), (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def envelope(audio: np.ndarray, n_frames: int) -> np.ndarray:
    hop = SR // FPS
    env = np.array([np.sqrt(np.mean(audio[t * hop : (t + 1) * hop] ** 2)) for t in range(n_frames)])
    return env / max(env.max(), 1e-9)


def talking_frames(face: np.ndarray, env: np.ndarray, background=None) -> np.ndarray:
    import cv2

    lm = landmarks_68(face, detect_faces(face)[0])
    centre = lm[60:68].mean(0)
    width = np.linalg.norm(lm[54] - lm[48])
    out = []
    for e in env:
        f = face.copy()
        if background is not None:  # swap a scene: recolour the top corners' backdrop
            f[: SIZE // 4] = (0.5 * f[: SIZE // 4] + 0.5 * np.array(background)).astype(np.uint8)
        h = max(0, int(round(e * width * 0.45)))
        if h:
            cv2.ellipse(f, (int(centre[0]), int(centre[1])), (int(width * 0.4), h), 0, 0, 360, (40, 10, 10), -1)
        out.append(f)
    return np.stack(out)


def make_clip(path: Path, kind: str = "", seconds: float = 2.0, who: str = "astronaut", background=None, shift: int = 4) -> Path:
    """Write one fixture clip; `kind` is '' (clean) or a distractor name from the corpus contract."""
    n = int(seconds * FPS)
    audio = speech(seconds)
    env = envelope(audio, n)
    frames = talking_frames(portrait(who), env, background)
    if kind == "av_offset":  # audio delayed by `shift` frames
        audio = np.concatenate([np.zeros(shift * SR // FPS, np.float32), audio])[: audio.size]
    elif kind == "silence":
        audio = np.zeros_like(audio)
    elif kind == "noise_audio":
        audio = np.random.default_rng(0).normal(0, 0.2, audio.size).astype(np.float32)
    elif kind == "blur":
        import cv2

        frames = np.stack([cv2.GaussianBlur(f, (0, 0), 3.0) for f in frames])
    elif kind == "scene_cut":
        other = talking_frames(portrait("grace_hopper" if who == "astronaut" else "astronaut"), env)
        frames = np.concatenate([frames[: n // 2], other[n // 2 :]])
    elif kind == "two_faces":  # a second person beside the speaker
        import cv2

        guest = cv2.resize(portrait("grace_hopper" if who == "astronaut" else "astronaut"), (SIZE // 2, SIZE // 2))
        frames = frames.copy()
        frames[:, SIZE // 2 :, SIZE // 2 :] = guest
    elif kind == "low_res":  # as the corpus makes it: the whole clip at a quarter of the size
        import cv2

        frames = np.stack([cv2.resize(f, (SIZE // 4, SIZE // 4), interpolation=cv2.INTER_AREA) for f in frames])
    elif kind == "no_face":
        frames = np.stack([np.full_like(frames[0], 90 + (t % 3)) for t in range(n)])
    write_video(path, frames, FPS, None if kind == "no_audio" else audio, SR)
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path
