"""The metadata sidecar beside every generated mp4 (`OUT.mp4` → `OUT.json`): what made the video, from what, when,
and what the self-check saw (inference/self_check.py). Written atomically, after the mp4, so a sidecar always
describes a complete video."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from ..media.atomic import atomic_path


def sidecar_path(video: str | Path) -> Path:
    return Path(video).with_suffix(".json")


def describe(*, checkpoint: Path, reference: Path, audio: Path, adapter: Path | None, crop: str, fps,
             self_check: dict, note: str = "") -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from ..train.adapt import base_hash, file_hash

    try:
        generator = f"avatarv {version('avatarv')}"
    except PackageNotFoundError:  # running from a source tree without an install
        generator = "avatarv (source)"
    return {
        "generator": generator,
        "ai_generated": True,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "checkpoint": str(checkpoint), "model_hash": base_hash(checkpoint),
        "adapter": None if adapter is None else str(adapter),
        "reference": str(reference), "reference_sha256": file_hash(reference, 64),
        "audio": str(audio), "audio_sha256": file_hash(audio, 64),
        "crop": crop, "fps": str(fps), "face_note": note,
        "self_check": self_check,
    }


def write_sidecar(video: str | Path, data: dict) -> Path:
    path = sidecar_path(video)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
    return path
