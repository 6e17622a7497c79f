"""Curate a corpus end to end: cascade per clip → identity graph → identity consistency → pairs → scores.

`curate_corpus(in_dir, out_dir, cfg, engine=...)` is what the CLI and the 01_curate notebook call; it returns
the four tables/dicts it writes (clips, identity_graph, pairs, report).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import CurateConfig
from . import identity_consistency
from .cascade import STAGES
from .corpus_io import list_clips, write_outputs
from .engines import run_engine
from .identity_graph import build_graph, edge_table, find_communities, label_communities
from .pairs import make_pairs
from .scoring import has_ground_truth, score
from .split import split_jobs

FUNNEL_STAGES = (*STAGES, identity_consistency.NAME)


@dataclass
class CurateResult:
    clips: pd.DataFrame
    identity_graph: pd.DataFrame
    pairs: pd.DataFrame
    report: dict


def link_identities(clips: pd.DataFrame, cfg: CurateConfig, seed: int):
    """Identity graph over the clips that passed the per-clip cascade; adds identity_pred to `clips`."""
    members = clips[clips["kept"] & clips["face_embedding"].map(len).gt(0)]
    ids = list(members["clip_id"])
    emb = np.array(list(members["face_embedding"]), np.float32) if ids else np.zeros((0, 128), np.float32)
    voice = list(members["voice_embedding"]) if "voice_embedding" in members else None
    g = build_graph(ids, emb, cfg, voice)
    labels = label_communities(find_communities(g, ids, emb, cfg, seed))
    clips["identity_pred"] = clips["clip_id"].map(labels).fillna("")
    return g


def apply_identity_consistency(clips: pd.DataFrame, manifest: pd.DataFrame | None, cfg: CurateConfig) -> None:
    claimed = {}
    if manifest is not None and "identity" in manifest:
        claimed = {str(c): str(i) for c, i in zip(manifest["clip_id"], manifest["identity"]) if isinstance(i, str) and i}
    share = identity_consistency.consistency(clips, claimed)
    clips["identity_consistency"] = clips["clip_id"].map(share).astype(float)
    bad = clips["kept"] & (clips["identity_consistency"] < cfg.identity_consistency_threshold)
    for i in clips.index[bad]:
        reason = (f"identity mismatch: only {clips.at[i, 'identity_consistency']:.2f} of the clips filed under this "
                  f"person share its face community < {cfg.identity_consistency_threshold}")
        clips.at[i, "kept"], clips.at[i, "stage"], clips.at[i, "reason"] = False, identity_consistency.NAME, reason
        clips.at[i, "all_reasons"] = json.dumps(json.loads(clips.at[i, "all_reasons"]) + [f"identity: {reason}"])


def funnel(clips: pd.DataFrame) -> list[dict]:
    """Clips remaining after each cascade stage (a clip leaves at its first failing stage)."""
    remaining, out = len(clips), [{"stage": "input", "remaining": len(clips), "rejected": 0}]
    for st in FUNNEL_STAGES:
        n = int((clips["stage"] == st).sum())
        remaining -= n
        out.append({"stage": st, "remaining": remaining, "rejected": n})
    return out


def curate_corpus(in_dir: str | Path, out_dir: str | Path | None, cfg: CurateConfig, *, engine: str | None = None,
                  seed: int = 0, workers: int | None = None, limit: int | None = None) -> CurateResult:
    engine = engine or cfg.engine
    jobs, manifest = list_clips(in_dir)
    if limit:
        jobs = jobs[:limit]
        if manifest is not None:
            manifest = manifest[manifest["clip_id"].isin({j["clip_id"] for j in jobs})]
    t0 = time.perf_counter()
    rows = run_engine(engine, jobs, cfg, workers)
    if cfg.split_scene_cuts and out_dir is not None:
        shots = split_jobs(rows, jobs, in_dir, out_dir, cfg)
        rows += run_engine(engine, shots, cfg, workers) if shots else []
    result = assemble(pd.DataFrame(rows), manifest, cfg, seed=seed, corpus_dir=in_dir, engine=engine,
                      seconds=time.perf_counter() - t0)
    if out_dir is not None:
        write_outputs(out_dir, result.clips, result.identity_graph, result.pairs, result.report)
    return result


def assemble(clips: pd.DataFrame, manifest: pd.DataFrame | None, cfg: CurateConfig, *, seed: int, corpus_dir,
             engine: str, seconds: float) -> CurateResult:
    """The cross-clip steps on the per-clip rows: identity graph, identity consistency, pairs, report, scores.

    Separate from the engines so thresholds of these steps can be re-tuned on stored rows without re-decoding.
    """
    clips = clips.drop(columns=[c for c in ("corpus_dir", "identity_pred", "scene_pred") if c in clips]).copy()
    clips.insert(2, "corpus_dir", str(Path(corpus_dir).resolve()))
    g = link_identities(clips, cfg, seed)
    apply_identity_consistency(clips, manifest, cfg)
    pairs, scene_of = make_pairs(clips, cfg)
    clips["scene_pred"] = clips["clip_id"].map(scene_of).fillna("")
    report = {
        "engine": engine, "n_clips": len(clips), "n_kept": int(clips["kept"].sum()), "n_pairs": len(pairs),
        "n_identities_pred": int(clips.loc[clips["identity_pred"] != "", "identity_pred"].nunique()),
        "n_edges": g.number_of_edges(), "seconds": round(seconds, 2),
        "clips_per_min": round(len(clips) / seconds * 60, 2) if seconds > 0 else math.nan,
        "funnel": funnel(clips), "rejections_by_stage": clips.loc[~clips["kept"], "stage"].value_counts().to_dict(),
        "sync_backend": sorted(set(clips["sync_backend"]) - {""}),
        "embedding_backend": cfg.embedding_backend, "voice_backend": cfg.voice_backend, "config": asdict(cfg),
        "has_ground_truth": has_ground_truth(manifest),
    }
    if report["has_ground_truth"]:
        report["scores"] = score(clips, manifest, pairs)
    return CurateResult(clips, edge_table(g), pairs, report)
