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


def describe(*, checkpoint: Path, reference: Path, audio: Path | None, adapter: Path | None, crop: str, fps,
             self_check: dict, note: str = "", text: str | None = None) -> dict:
    """`audio` is the driving speech file; None when the speech was synthesised from `text` in the cloned voice."""
    import hashlib
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
        "audio": str(audio) if audio else "synthesised from text (voice cloned from the reference)",
        "audio_sha256": file_hash(audio, 64) if audio else None,
        "text_sha256": hashlib.sha256(text.encode()).hexdigest() if text else None,
        "crop": crop, "fps": str(fps), "face_note": note,
        "self_check": self_check,
    }


def mp4_tags(info: dict) -> dict[str, str]:
    """The provenance that travels inside the mp4 itself (container tags), for when the sidecar is lost."""
    return {f"avatarv_{k}": str(info[k]) for k in ("generator", "created", "model_hash", "reference_sha256",
                                                   "audio_sha256") if info.get(k) is not None}


def write_sidecar(video: str | Path, data: dict) -> Path:
    path = sidecar_path(video)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
    return path
