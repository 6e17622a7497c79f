"""`avatarv demo`: serve the local demo web app (demo/app.py) over a saved pipeline.

    avatarv demo [--checkpoint runs/sft/final] [--refiner DIR | --no-refine] [--host 127.0.0.1 --port 8766] [--out runs/demo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..paths import RUNS

DEFAULT_OUT = RUNS / "demo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None,
                   help="a saved pipeline (default: runs/sft/final, else runs/a2v/final, as `avatarv generate`)")
    p.add_argument("--refiner", default=None,
                   help="a trained super-resolution refiner (stage 08). Default: runs/refiner/model when it exists")
    p.add_argument("--no-refine", action="store_true", help="skip the refiner: the model's own face size")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"uploads and results (default {DEFAULT_OUT})")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's)")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default: params.yaml seed)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: params.yaml device)")
    p.add_argument("--max-upload-mb", type=float, default=200, help="largest accepted upload (default 200 MB)")


def main(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from ..config import load_config
    from ..inference.cli import check_refiner, resolve_checkpoint, resolve_refiner
    from .app import create_app

    cfg = load_config(args.profile)
    ckpt = resolve_checkpoint(args.checkpoint)
    refiner = None if args.no_refine else check_refiner(ckpt, resolve_refiner(args.refiner), explicit=bool(args.refiner))
    device = args.device or cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    app = create_app(ckpt, args.out, refiner=refiner, steps=args.steps, seed=cfg.seed if args.seed is None else args.seed,
                     device=device, max_upload_bytes=int(args.max_upload_mb * 2**20))
    print(f"avatarv demo: {ckpt}{f' + refiner {refiner}' if refiner else ''} on {device}; open http://{args.host}:{args.port}/ (results in {args.out})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
