"""Real-footage-like clips for the face-alignment, self-check and adaptation tests (eval/real_footage.py): corpus
identities animated by the corpus rig, framed in a 16:9 frame at a given face size and frame rate."""

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def identities():
    from avatarv.data.identities import build_identities

    return build_identities(22, 1234, ["en-us"])


def footage(identity: int = 21, seconds: float = 2.0, fps: int = 25, face_fraction: float = 0.2, seed: int = 0,
            background: int = 0):
    from avatarv.eval.real_footage import footage_clip

    return footage_clip(identities()[identity], seconds=seconds, fps=fps, face_fraction=face_fraction, seed=seed,
                        background=background)


def embed(frames: np.ndarray, size: tuple[int, int], at: tuple[int, int], side: int, fill: int = 90) -> np.ndarray:
    """Square frames resized to `side` and set at `at` = (x, y) into a flat (W, H) frame: a known framing."""
    import cv2

    w, h = size
    out = np.full((len(frames), h, w, 3), fill, np.uint8)
    x, y = at
    for i, f in enumerate(frames):
        out[i, y : y + side, x : x + side] = cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA)
    return out
