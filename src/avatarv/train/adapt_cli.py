"""`avatarv adapt --ref CLIP.mp4`: fit the per-person LoRA of a reference clip (train/adapt.py), cached by the clip's
hash; `avatarv generate --ref CLIP.mp4 --adapt` then uses it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ref", required=True, help="the person's reference clip (.mp4 with their speech, >= ~2 s)")
    p.add_argument("--checkpoint", default=None, help="base pipeline (default: runs/sft/final, else runs/a2v/final)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: params.yaml train.lora.steps)")
    p.add_argument("--out-root", default=None, help="adapter cache folder (default: runs/adapt)")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming a killed run")
    p.add_argument("--device", default=None, help="cpu | cuda (default: params.yaml device)")
    p.add_argument("--no-progress", action="store_true")
    from ..inference.consent import add_consent_flag

    add_consent_flag(p)


def main(args: argparse.Namespace) -> int:
    import time

    from ..config import load_config
    from ..errors import MediaError
    from ..inference.cli import resolve_checkpoint
    from ..inference.consent import require_consent
    from ..inference.pipeline import load_pipeline
    from ..paths import RUNS
    from .adapt import adapt

    ref = Path(args.ref)
    if not ref.exists():
        raise MediaError(ref, "file not found")
    require_consent(ref, args.i_have_consent)
    cfg = load_config(args.profile)
    if args.device:
        cfg.device = args.device
    ckpt = resolve_checkpoint(args.checkpoint)
    pipe = load_pipeline(ckpt)
    start = time.perf_counter()
    res = adapt(cfg, pipe, ckpt, ref, root=Path(args.out_root) if args.out_root else RUNS / "adapt", steps=args.steps,
                resume=not args.no_resume, progress=not args.no_progress)
    took = time.perf_counter() - start
    state = "cached, not retrained" if res.cached else f"{res.metrics['steps']} steps in {took:.0f} s"
    print(f"{res.adapter_dir}: LoRA adapter for {ref} ({state}); use `avatarv generate --ref {ref} --adapt` "
          f"or `--lora {res.adapter_dir}`")
    return 0
