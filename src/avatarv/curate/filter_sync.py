"""Cascade step 8 (seed: audio-visual sync): offset and confidence between lips and voice.

Backends: the learned SyncNet-style expert (`avatarv.models.sync_expert`) when `sync_expert_dir` holds a
trained one (it is trained in stage 10_eval, so a first repro has none), otherwise the landmark
mouth-opening vs audio-envelope cross-correlation in `sync_offset`. Both follow SyncNet's protocol (offset at
the best lag, confidence = median minus best distance); the row records which one ran.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..paths import ROOT
from .checks import Check, fail, ok
from .sync_offset import estimate_offset

NAME = "sync"


@functools.lru_cache(maxsize=2)
def _load_expert(path: str):
    from ..models.sync_expert import load_sync_expert

    return load_sync_expert(path)


def expert_dir(cfg) -> Path | None:
    """The trained sync expert's folder, or None (its absence is not an error: the landmark backend runs)."""
    if not cfg.sync_expert_dir:
        return None
    p = Path(cfg.sync_expert_dir)
    p = p if p.is_absolute() else ROOT / p
    return p if p.is_dir() else None


def _expert_offset(ctx, path: Path) -> tuple[int, float]:
    from ..models.sync_expert import offset_curve, prepare

    fp = ctx.faces
    boxes = np.array([fp.main.box_at(t).as_list() for t in range(len(ctx.frames))], np.float32)
    inp = prepare(ctx.frames, ctx.audio16k, 16000, boxes=boxes, fps=ctx.fps)
    curve = offset_curve(_load_expert(str(path)), inp, ctx.cfg.sync_search_frames)
    return curve.offset, curve.lse_c


def check(ctx) -> Check:
    c, fp = ctx.cfg, ctx.faces
    if fp.span().size < 10:
        return fail(NAME, "too few frames with lip landmarks")
    path = expert_dir(c) if c.sync_backend in ("auto", "expert") else None
    if c.sync_backend == "expert" and path is None:
        raise RuntimeError(f"curate.sync_backend is 'expert' but sync_expert_dir {c.sync_expert_dir!r} holds no model")
    if path is not None:
        offset, conf = _expert_offset(ctx, path)
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
