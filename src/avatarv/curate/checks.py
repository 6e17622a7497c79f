"""The record every cascade filter returns: pass/fail, the measured values and a human-readable reason.

Why one small type: clips.parquet must show, for every clip, each filter's measurement and why it was rejected,
whichever engine ran it; filters fill `values` with the columns listed in SCORE_COLUMNS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Every measured score column of clips.parquet (NaN where a filter could not measure), in cascade order.
SCORE_COLUMNS = (
    "duration_s", "width", "height", "fps", "decoded_frac", "audio_s",
    "scene_cut_score", "n_scene_cuts",
    "speech_frac", "spectral_flatness", "audio_rms_db",
    "face_frac", "multi_face_frac", "max_faces_seen", "n_tracks",
    "face_px",
    "yaw_abs",
    "sharpness", "detail_ratio", "piqe",
    "av_offset_pred", "sync_confidence",
    "identity_consistency",
)


@dataclass
class Check:
    name: str  # filter (cascade stage) name
    passed: bool
    reason: str = ""  # empty when passed; else "<what> <value> <comparison> <threshold>"
    values: dict[str, float] = field(default_factory=dict)


def fail(name: str, reason: str, **values: float) -> Check:
    return Check(name, False, reason, values)


def ok(name: str, **values: float) -> Check:
    return Check(name, True, "", values)
