"""Reading what a user brings to generation: a reference video or photo, and speech audio.

Both go through the media normaliser (media/normalize.py): a reference video of any container, frame rate
(23.976 ... 59.94, variable) or rotation comes out as upright frames at the working rate, with the file's own rate
kept so `avatarv generate` can write its output at it; speech from a wav or any file with an audio stream comes out
mono, at the file's own sample rate (the pipeline resamples its features to the model's rate with the same
normaliser; the muxed output keeps the speech as recorded).

Each failure is one line naming the file and the problem (missing or unreadable file, no audio stream, too short,
silent, NaN samples); the CLI, the pipeline's path inputs and the eval share these checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError, MediaError
from ..media.normalize import WORKING_FPS, normalize_audio, normalize_video

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
SILENCE_PEAK = 1e-3  # |sample| below this everywhere = silence (16-bit noise floor is ~3e-5)


@dataclass
class Reference:
    frames: np.ndarray  # (T, H, W, 3) uint8 at the working rate; one frame for a photo
    source_rate: Fraction  # the video's own frame rate; the working rate for a photo


def read_reference(path: str | Path, max_frames: int = 250) -> Reference:
    """The first `max_frames` working-rate frames of a reference video, or the one frame of a photo."""
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "file not found")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                frame = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise MediaError(path, f"unreadable image ({type(e).__name__})") from None
        return Reference(frame[None], WORKING_FPS)
    v = normalize_video(path, max_frames=max_frames)
    return Reference(v.frames, v.source_rate or WORKING_FPS)


def read_speech(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float audio at the file's own rate; refuses files without an audio stream, empty or silent audio."""
    audio, sr = normalize_audio(path, sample_rate=None)
    if len(audio) < sr / 25:
        raise InputError(path, f"audio is too short ({len(audio) / sr * 1000:.0f} ms; need at least one video frame)")
    if not np.isfinite(audio).all():
        raise InputError(path, "audio contains NaN/inf samples")
    peak = float(np.abs(audio).max())
    if peak < SILENCE_PEAK:
        raise InputError(path, f"audio is silent (peak amplitude {peak:.1e})")
    return audio, sr
