"""The per-clip curation cascade (seed: "raw videos go through a multi-stage filtering cascade").

`curate_clip(clip_id, path, probe, cfg) -> row` runs the filters in order and returns one flat row for
clips.parquet: kept, the first failing stage and its reason, every failure's reason, every measured score,
and the features the identity graph needs. It is a pure function of its inputs, which is what lets the local
and the Ray engine give identical tables. A filter that raises becomes a rejection row, never a crash.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..config import CurateConfig
from ..errors import AvatarVError
from . import (
    filter_container,
    filter_face_count,
    filter_face_size,
    filter_head_pose,
    filter_quality,
    filter_scene_cut,
    filter_speech,
    filter_sync,
)
from .checks import SCORE_COLUMNS, Check, fail
from .clip import ClipContext
from .clip_features import background_histogram, face_embedding, voice_embedding

# Cascade order: cheapest and most fundamental first; the first failure names the clip's reason.
FILTERS = (filter_container, filter_scene_cut, filter_speech, filter_face_count, filter_face_size, filter_head_pose,
           filter_quality, filter_sync)
STAGES = tuple(f.NAME for f in FILTERS)
# Filters that need what an earlier one established; if that one failed they cannot measure.
NEEDS = {"scene_cut": "container", "speech": "container", "face_count": "container", "face_size": "face_count",
         "head_pose": "face_count", "quality": "face_count", "sync": "face_count"}


def _run(f, ctx) -> Check:
    try:
        return f.check(ctx)
    except AvatarVError as e:
        return fail(f.NAME, f"{f.NAME} failed: {getattr(e, 'problem', e)}")
    except Exception as e:  # noqa: BLE001 - one bad clip must not stop the batch
        return fail(f.NAME, f"{f.NAME} error: {type(e).__name__}: {str(e)[:100]}")


def crash_row(clip_id: str, path: str, problem: str) -> dict:
    """A container-stage rejection row for a clip that could not be processed at all."""
    return {"clip_id": clip_id, "kept": False, "stage": "container", "reason": f"unreadable: {problem}",
            "all_reasons": json.dumps([f"container: unreadable: {problem}"]), "passed_stages": "[]",
            **dict.fromkeys(SCORE_COLUMNS, math.nan), "segments": "[]", "sync_backend": "", "face_embedding": [],
            "embedding_spread": math.nan, "background_hist": [], "mouth_series": [], "voice_embedding": [],
            "path": path}


def _still_measurable(failed: Check, ctx: ClipContext) -> bool:
    """A failed face count (e.g. two faces) still leaves a main face track to measure size, pose, sync on."""
    return failed.name == "face_count" and ctx.faces.main is not None


def curate_clip(clip_id: str, path: str | Path, probe: dict, cfg: CurateConfig) -> dict:
    ctx = ClipContext(clip_id=clip_id, path=Path(path), probe=probe, cfg=cfg)
    scores = dict.fromkeys(SCORE_COLUMNS, math.nan)
    checks: dict[str, Check] = {}
    for f in FILTERS:
        if cfg.short_circuit and any(not ch.passed for ch in checks.values()):
            break
        need = checks.get(NEEDS.get(f.NAME, "")) if f.NAME in NEEDS else None
        if f.NAME in NEEDS and (need is None or not (need.passed or _still_measurable(need, ctx))):
            continue  # its prerequisite failed: nothing to measure on
        ch = _run(f, ctx)
        checks[f.NAME] = ch
        scores.update({k: float(v) for k, v in ch.values.items()})
    failed = [ch for ch in checks.values() if not ch.passed]
    row = {"clip_id": clip_id, "kept": not failed, "stage": failed[0].name if failed else "",
           "reason": failed[0].reason if failed else "", "all_reasons": json.dumps([f"{c.name}: {c.reason}" for c in failed]),
           "passed_stages": json.dumps([c.name for c in checks.values() if c.passed]), **scores,
           "segments": json.dumps(ctx.cache.get("segments", [])), "sync_backend": ctx.cache.get("sync_backend", ""),
           "face_embedding": [], "embedding_spread": math.nan, "background_hist": [], "mouth_series": [], "voice_embedding": []}
    if "face_count" in checks and ctx.faces.main is not None:
        row["mouth_series"] = [round(float(x), 5) for x in ctx.faces.mouth]  # for plots and sync studies
        try:
            emb, spread = face_embedding(ctx)
            row.update(face_embedding=[float(x) for x in emb], embedding_spread=spread,
                       background_hist=[float(x) for x in background_histogram(ctx)])
            if cfg.voice_backend == "resemblyzer" and checks.get("speech") is not None and checks["speech"].passed:
                row["voice_embedding"] = [float(x) for x in voice_embedding(ctx.audio16k)]
        except Exception as e:  # noqa: BLE001 - features are best effort; the clip simply stays out of the graph
            row["all_reasons"] = json.dumps(json.loads(row["all_reasons"]) + [f"features: {type(e).__name__}: {e}"])
    return row
