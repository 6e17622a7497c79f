"""`avatarv train --stage NAME`: one entry point for every curriculum stage (issue 6: vae; issue 7: t2v, a2v, sft,
lora). STAGES maps a stage name to a module exposing `main(args) -> int`; stage modules read the shared options
below (and any they add here) with getattr defaults, so adding a stage is one dict entry.
"""

from __future__ import annotations

import importlib

STAGES: dict[str, str] = {
    "vae": "avatarv.train.vae",
    "t2v": "avatarv.train.t2v",
    "a2v": "avatarv.train.a2v",
    "sft": "avatarv.train.sft",
    "lora": "avatarv.train.lora",
    "distill": "avatarv.train.distill",
    "refiner": "avatarv.train.refiner",
    "rlhf": "avatarv.train.rlhf",
}


def add_arguments(parser) -> None:
    parser.add_argument("--stage", required=True, choices=sorted(STAGES), help="curriculum stage to train")
    parser.add_argument("--corpus", default=None, help="corpus dir (default data/corpus)")
    parser.add_argument("--out", default=None, help="run dir (default runs/<stage>)")
    parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming a checkpoint")
    parser.add_argument("--steps", type=int, default=None, help="t2v/a2v/sft/lora: override the profile's steps")
    parser.add_argument("--curated", default=None, help="curated dir with pairs.parquet (default data/curated)")
    parser.add_argument("--runs", default=None, help="t2v/a2v/sft/lora: runs folder (default runs/)")
    parser.add_argument("--identity", default=None, help="lora: the identity to adapt to, e.g. id021")
    parser.add_argument("--ablations", action="store_true", help="sft: also train every aux-loss ablation")


def main(args) -> int:
    return int(importlib.import_module(STAGES[args.stage]).main(args) or 0)
