"""Cascade step 8 (seed: audio-visual sync): offset and confidence between lips and voice.

Backend: the Eval area's learned sync expert when it is importable (`avatarv.eval.sync_expert`, exposing
`estimate_offset(frames, audio, sample_rate, fps, max_lag) -> (offset, confidence)`), otherwise the
landmark mouth-opening vs audio-envelope cross-correlation in `sync_offset`. The row says which one ran.
"""

from __future__ import annotations

import importlib

import numpy as np

from .checks import Check, fail, ok
from .sync_offset import estimate_offset

NAME = "sync"


def _expert():
    """The Eval engineer's sync expert, or None (a clean optional import: its absence is not an error)."""
    try:
        mod = importlib.import_module("avatarv.eval.sync_expert")
    except ImportError:
        return None
    return getattr(mod, "estimate_offset", None)


def check(ctx) -> Check:
    c, fp = ctx.cfg, ctx.faces
    if fp.span().size < 10:
        return fail(NAME, "too few frames with lip landmarks")
    expert = _expert() if c.sync_backend in ("auto", "expert") else None
    if c.sync_backend == "expert" and expert is None:
        raise RuntimeError("curate.sync_backend is 'expert' but avatarv.eval.sync_expert is not available")
    if expert is not None:
        offset, conf = expert(ctx.frames, ctx.audio16k, 16000, ctx.fps, c.sync_search_frames)[:2]
        ctx.cache["sync_backend"] = "expert"
    else:
        offset, conf, _ = estimate_offset(fp.mouth, ctx.audio16k, 16000, ctx.fps, c.sync_search_frames)
        ctx.cache["sync_backend"] = "landmarks"
    v = dict(av_offset_pred=float(offset), sync_confidence=float(conf))
    if abs(offset) > c.max_av_offset_frames:
        return fail(NAME, f"audio-video offset {offset:+d} frames exceeds ±{c.max_av_offset_frames}", **v)
    if conf < c.min_sync_confidence:
        return fail(NAME, f"lips do not follow the audio: sync confidence {conf:.2f} < {c.min_sync_confidence}", **v)
    return ok(NAME, **v)
