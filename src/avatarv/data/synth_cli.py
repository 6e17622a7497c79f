"""`avatarv synth --out DIR [...]`: generate the embedded synthetic talking-head corpus (issue 4).

Defaults come from the profile's `corpus` section of params.yaml; flags override single values.
"""

from __future__ import annotations

import argparse
import json

from ..config import load_config
from ..paths import CORPUS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=str(CORPUS), help="output corpus folder (default data/corpus)")
    p.add_argument("--identities", type=int, help="number of identities (photo faces first, then procedural)")
    p.add_argument("--scenes", type=int, help="scenes per identity")
    p.add_argument("--clips-per-scene", type=int, help="clean clips per (identity, scene)")
    p.add_argument("--seconds", type=float, help="clip duration in seconds")
    p.add_argument("--seed", type=int, help="random seed (default: params.yaml seed)")
    p.add_argument("--size", type=int, help="frame side in pixels (even)")
    p.add_argument("--distractor-fraction", type=float, help="extra faulty clips as a share of clean clips")
    p.add_argument("--workers", type=int, help="worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def spec_from_args(args: argparse.Namespace):
    from .synthesize import CorpusSpec

    cfg = load_config(args.profile)
    c = cfg.corpus
    pick = lambda v, d: d if v is None else v
    return CorpusSpec(
        identities=pick(args.identities, c.identities), scenes=pick(args.scenes, c.scenes),
        clips_per_scene=pick(args.clips_per_scene, c.clips_per_scene), seconds=pick(args.seconds, c.seconds),
        size=pick(args.size, c.size), seed=pick(args.seed, cfg.seed), fps=c.fps, sample_rate=c.sample_rate,
        distractor_fraction=pick(args.distractor_fraction, c.distractor_fraction), languages=tuple(c.languages),
        holdout_identities=min(cfg.train.holdout_identities, max(0, pick(args.identities, c.identities) - 1)),
    ), pick(args.workers, c.workers)


def main(args: argparse.Namespace) -> int:
    from .synthesize import synthesize_corpus

    spec, workers = spec_from_args(args)
    summary = synthesize_corpus(args.out, spec, workers=workers, progress=not args.quiet)
    print(json.dumps(summary))
    return 0
