"""`avatarv curate --in DIR --out DIR2 [--engine local|ray]`: the curation cascade, identity graph and pairs.

Writes DIR2/clips.parquet, identity_graph.parquet, pairs.parquet and report.json (COMMON.md contract) and
prints the funnel and, when the corpus carries ground truth, the scores. Clips of any frame rate are curated at the
working rate (media/normalize.py). Like every batch command (batch.py) it ends with one line per rejected clip
(file, stage and reason) and how many were kept; a run that kept nothing exits 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..batch import Rejection, finish
from ..config import load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in", dest="in_dir", required=True, help="corpus folder (manifest.parquet + clips/*.mp4, or mp4s)")
    p.add_argument("--out", dest="out_dir", required=True, help="curated output folder")
    p.add_argument("--engine", choices=("local", "ray"), default=None, help="default: curate.engine in params.yaml")
    p.add_argument("--workers", type=int, default=None, help="processes / Ray CPUs (default: curate.workers)")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips (smoke runs)")


def main(args: argparse.Namespace) -> int:
    from .pipeline import curate_corpus

    cfg = load_config(args.profile)
    res = curate_corpus(args.in_dir, args.out_dir, cfg.curate, engine=args.engine, seed=cfg.seed,
                        workers=args.workers, limit=args.limit)
    r = res.report
    print(f"curated {r['n_clips']} clips with the {r['engine']} engine in {r['seconds']:.1f} s "
          f"({r['clips_per_min']:.1f} clips/min): {r['n_kept']} kept, {r['n_identities_pred']} identities, "
          f"{r['n_pairs']} pairs → {args.out_dir}")
    for f in r["funnel"][1:]:
        print(f"  {f['stage']:<12} -{f['rejected']:<4} → {f['remaining']}")
    if r.get("scores"):
        s = r["scores"]
        print(json.dumps({k: s[k] for k in ("min_kind_recall", "clean_false_rejection", "av_offset_accuracy",
                                             "pair_precision")} | {"identity": s["identity"]}, indent=1))
    else:
        print("no ground truth in this corpus (e.g. ingested real footage): nothing scored")
    dropped = res.clips.loc[~res.clips["kept"].astype(bool)]
    rejected = [Rejection(str(Path(args.in_dir) / p), f"{stage}: {reason}")
                for p, stage, reason in zip(dropped["path"], dropped["stage"], dropped["reason"])]
    return finish("curate", rejected, r["n_kept"], r["n_clips"], what="clips", verb="kept")
