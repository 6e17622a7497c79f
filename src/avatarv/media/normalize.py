"""The one media normaliser: any file PyAV opens → frames at the working rate and mono audio at the working sample
rate (seed: data ingestion; every entry point that reads footage from outside the project goes through here).

Users: `avatarv ingest` (data/ingest.py), `avatarv generate`'s reference and speech (inference/inputs.py),
`avatarv eval` (eval/runner.py), curation (curate/clip.py, curate/split.py), the study export of generated videos
(study/export.py) and the training windows a LoRA reference is cut from (data/datasets.py). No metric or stage
retimes on its own or refuses a rate: the sync expert's `prepare` hands other rates back to `retime`.

- Rates are exact fractions (`as_rate`: 23.976 → 24000/1001, 29.97 → 30000/1001, "60000/1001", 25 → 25).
- Frames are retimed by presentation time (`retime_index`): output frame k shows the source frame nearest in time
  to k / fps (ties to the earlier one), so constant rates and variable-rate phone clips come out alike, and the
  output holds the frames that start within the source's span. Working-rate input passes through unchanged.
- Rotation metadata (a portrait phone clip) is applied by the decoder, media/video.read_video.
- Audio is mixed to mono, aligned to the first frame (a stream that starts late is padded with silence, one that
  starts early is trimmed) and resampled (band-limited polyphase, media/audio.resample).
- Outputs can keep a source's rate: `retime(frames, WORKING_FPS, Fraction(30000, 1001), n_out)` picks the
  working-rate frame for each output instant (`avatarv generate --fps`); media/video.write_video writes any
  rational rate.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from .audio import load_audio, resample
from .video import Video, read_video

WORKING_FPS = Fraction(25)  # params.yaml corpus.fps; callers holding a config pass cfg.corpus.fps
WORKING_SAMPLE_RATE = 16000  # params.yaml corpus.sample_rate
NTSC_TOLERANCE = 5e-3  # a float within this of n·1000/1001 fps is read as that NTSC rate (23.976 → 24000/1001)


def as_rate(value) -> Fraction:
    """An exact frame rate from a Fraction, an int, a float (NTSC rates snap to n·1000/1001) or a string
    ("30000/1001", "29.97", "25"); ValueError for anything not positive and finite."""
    rate: Fraction | None = None
    if isinstance(value, Fraction):
        rate = value
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        rate = Fraction(int(value))
    elif isinstance(value, str) and "/" in value:
        try:
            rate = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            rate = None
    else:
        try:
            x = float(value)
        except (TypeError, ValueError):
            x = math.nan
        if math.isfinite(x) and x > 0:
            n = round(x * 1.001)
            if abs(x - round(x)) < 1e-6:
                rate = Fraction(round(x))
            elif n > 0 and abs(x - n * 1000 / 1001) < NTSC_TOLERANCE:
                rate = Fraction(n * 1000, 1001)
            else:
                rate = Fraction(x).limit_denominator(1001)
    if rate is None or rate <= 0:
        raise ValueError(f"frame rate must be a positive number like 25, 29.97 or 30000/1001, got {value!r}")
    return rate


def frame_times(n: int, rate) -> np.ndarray:
    """Start time (s) of frames 0..n-1 at a constant `rate`."""
    r = as_rate(rate)
    return np.arange(n, dtype=np.float64) * r.denominator / r.numerator


def frame_count(seconds: float, rate) -> int:
    """How many frames of `rate` start within `seconds` (at least one)."""
    r = as_rate(rate)
    return max(1, int(math.floor(seconds * r.numerator / r.denominator + 1e-6)))


def span(times: np.ndarray, fallback_rate=WORKING_FPS) -> float:
    """Seconds covered by frames starting at `times`: the last start plus one typical (median) frame interval."""
    times = np.asarray(times, np.float64)
    if len(times) >= 2:
        return float(times[-1] - times[0] + np.median(np.diff(times)))
    r = as_rate(fallback_rate)
    return float(len(times) * r.denominator / r.numerator)


def retime_index(times: np.ndarray, rate, n_out: int) -> np.ndarray:
    """For each of `n_out` output frames at `rate`, the index of the source frame (start `times`, s from the first,
    ascending) nearest in time; ties go to the earlier frame."""
    times = np.asarray(times, np.float64)
    if len(times) == 0:
        raise ValueError("retime: no source frames")
    if len(times) == 1:
        return np.zeros(n_out, np.int64)
    t = frame_times(n_out, rate)
    hi = np.clip(np.searchsorted(times, t), 1, len(times) - 1)
    lo = hi - 1
    return np.where(t - times[lo] <= times[hi] - t + 1e-9, lo, hi).astype(np.int64)


def rate_index(n: int, source_rate, rate, n_out: int | None = None) -> np.ndarray:
    """`retime_index` for `n` frames at the constant `source_rate`: by default the frames that start within them."""
    times = frame_times(n, source_rate)
    if n_out is None:
        n_out = frame_count(span(times, source_rate), rate)
    return retime_index(times, rate, n_out)


def retime(frames: np.ndarray, source, rate, n_out: int | None = None) -> np.ndarray:
    """`frames` (at constant rate `source`, or at the start times `source` when it is an array) as seen at `rate`:
    `n_out` frames, by default those that start within the source's span."""
    if not isinstance(source, np.ndarray):
        return frames[rate_index(len(frames), source, rate, n_out)]
    times = np.asarray(source, np.float64)
    return frames[retime_index(times, rate, frame_count(span(times), rate) if n_out is None else n_out)]


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad to exactly n samples."""
    return np.pad(audio[:n], (0, max(0, n - len(audio)))).astype(np.float32, copy=False)


def is_variable_rate(times: np.ndarray | None, tolerance: float = 0.05) -> bool:
    """True when frame intervals differ from their median by more than `tolerance` of it."""
    if times is None or len(times) < 3:
        return False
    d = np.diff(np.asarray(times, np.float64))
    med = float(np.median(d))
    return bool(med > 0 and np.abs(d - med).max() > tolerance * med)


@dataclasses.dataclass
class Normalized(Video):
    """Frames at `fps` (the working rate unless asked otherwise) and mono audio at `sample_rate`, plus what the file
    was before normalisation."""

    source_rate: Fraction = Fraction(0)  # the file's average frame rate (0 without video)
    source_sample_rate: int = 0
    source_channels: int = 0
    source_size: tuple[int, int] = (0, 0)  # (w, h) as displayed
    rotation: int = 0  # degrees counter-clockwise applied to bring the picture upright
    variable_rate: bool = False


def normalize_video(path: str | Path, *, fps=WORKING_FPS, sample_rate: int | None = WORKING_SAMPLE_RATE,
                    video: bool = True, need_audio: bool = False, max_frames: int | None = None,
                    max_seconds: float | None = None, fit_audio: bool = False) -> Normalized:
    """Decode `path` and bring it to `fps` and `sample_rate` (None keeps the file's sample rate).

    `max_frames` / `max_seconds` cut the output (and stop decoding early); `fit_audio` trims or pads the audio to
    the video's length. Raises MediaError (one line naming the file) for anything media/video.read_video refuses.
    """
    rate = as_rate(fps)
    limit = max_seconds
    if max_frames:
        limit = min(limit if limit is not None else math.inf, max_frames * rate.denominator / rate.numerator)
    v = read_video(path, need_audio=need_audio, video=video, max_seconds=limit)
    info = v.source
    frames, n = v.frames, 0
    if video:
        duration = span(v.times, info.rate or rate)
        if limit is not None:
            duration = min(duration, limit)
        n = frame_count(duration, rate)
        if max_frames:
            n = min(n, max_frames)
        frames = frames[retime_index(v.times, rate, n)]
    audio, sr = v.audio, v.sample_rate
    if audio.size:
        shift = int(round(v.audio_start * sr))
        audio = np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]
        if limit is not None and math.isfinite(limit):
            audio = audio[: int(math.ceil(limit * sr))]
        if sample_rate:
            audio, sr = resample(audio, sr, int(sample_rate)), int(sample_rate)
        if fit_audio and video:
            audio = fit_length(audio, int(round(n * sr * rate.denominator / rate.numerator)))
    return Normalized(
        frames=frames, fps=float(rate), audio=audio.astype(np.float32, copy=False), sample_rate=sr if audio.size else 0,
        source=info, source_rate=info.rate, source_sample_rate=info.sample_rate, source_channels=info.channels,
        source_size=(info.width, info.height), rotation=info.rotation, variable_rate=is_variable_rate(v.times),
    )


def normalize_audio(path: str | Path, sample_rate: int | None = WORKING_SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """(mono float32 audio, rate) of an audio file or of a video's audio stream, resampled to `sample_rate` (None
    keeps the file's own rate)."""
    return load_audio(path, sample_rate)
