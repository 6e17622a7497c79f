"""`avatarv eval --generated DIR --reference DIR --out metrics.json`: per-clip and aggregate metrics.

Pairs clips by file name (see runner.pair_files); each metric in the output names its backend. Clips at any frame
rate or audio format are scored at the working rate (media/normalize.py). A clip that cannot be scored keeps its
row with `error`, is listed at the end, and a run that scored nothing exits 1 (batch.py). The in-repo sync
expert comes from stage 10_eval (runs/eval/sync_expert) unless --sync-expert points elsewhere; SyncNet, ArcFace
and Q-Align run when their weights are supplied (flags or params.yaml `eval:`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import load_config
from ..paths import RUNS

DEFAULT_EXPERT = RUNS / "eval" / "sync_expert"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generated", required=True, type=Path, help="folder of generated clips (NAME.mp4, audio muxed)")
    p.add_argument("--reference", required=True, type=Path, help="folder of references (NAME.mp4|png|jpg) or one file")
    p.add_argument("--out", required=True, type=Path, help="metrics JSON to write")
    p.add_argument("--sync-expert", default=None, help=f"sync expert folder (default {DEFAULT_EXPERT} if present)")
    p.add_argument("--syncnet-weights", default=None, help="syncnet_v2.model (enables SyncNet LSE-C/D)")
    p.add_argument("--arcface-onnx", default=None, help="ArcFace ONNX (switches identity to ArcFace)")
    p.add_argument("--qalign-weights", default=None, help="Q-Align weights folder (enables Q-Align)")
    p.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from ..batch import Rejection, finish, reason_of
    from .runner import EvalSettings, evaluate_dirs, write_json

    cfg = load_config(args.profile)
    expert = args.sync_expert if args.sync_expert is not None else (str(DEFAULT_EXPERT) if DEFAULT_EXPERT.exists() else "")
    over = {"sync_expert": expert, "syncnet_weights": args.syncnet_weights, "qalign_weights": args.qalign_weights}
    if args.arcface_onnx:
        over.update(arcface_onnx=args.arcface_onnx, identity_backend="arcface")
    settings = EvalSettings.from_config(cfg, **over)
    doc = evaluate_dirs(args.generated, args.reference, settings, progress=not args.no_progress)
    write_json(doc, args.out)
    agg = doc["aggregate"]
    shown = ", ".join(f"{k}={agg[k]:.3f}" for k in ("sync_conf", "face_sim", "piqe", "lip_audio_corr") if k in agg)
    print(f"{args.out}: {agg['n_scored']}/{agg['n_clips']} clips scored; {shown}")
    rejected = [Rejection(r["generated"], reason_of(r["generated"], r["error"])) for r in doc["clips"] if r.get("error")]
    return finish("eval", rejected, agg["n_scored"], agg["n_clips"], what="clips", verb="scored")
