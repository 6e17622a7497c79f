"""Reading what a user brings to generation: a reference video or photo, and speech audio.

Each failure is one line naming the file and the problem (missing or unreadable file, no audio stream, too short,
silent, NaN samples); the CLI, the pipeline's path inputs and the eval share these checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, MediaError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
SILENCE_PEAK = 1e-3  # |sample| below this everywhere = silence (16-bit noise floor is ~3e-5)


def read_reference(path: str | Path, max_frames: int = 250) -> tuple[np.ndarray, float]:
    """(T, H, W, 3) uint8 frames and fps of a reference video, or one frame of a photo."""
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
        return frame[None], 25.0
    from ..media import read_video

    v = read_video(path, max_frames=max_frames)
    return v.frames, v.fps


def read_speech(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float audio; refuses files without an audio stream, empty or silent audio."""
    from ..media import load_audio

    audio, sr = load_audio(path)
    if len(audio) < sr / 25:
        raise InputError(path, f"audio is too short ({len(audio) / sr * 1000:.0f} ms; need at least one video frame)")
    if not np.isfinite(audio).all():
        raise InputError(path, "audio contains NaN/inf samples")
    peak = float(np.abs(audio).max())
    if peak < SILENCE_PEAK:
        raise InputError(path, f"audio is silent (peak amplitude {peak:.1e})")
    return audio, sr
