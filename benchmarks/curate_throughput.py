"""CPU throughput of the curation cascade: clips per minute for the local engine (in-process and worker
processes) and the Ray Data engine on the same clips, side by side in one run, with their ratio.

    .venv/bin/python benchmarks/curate_throughput.py --corpus data/corpus --clips 24 --workers 2

Not a test: numbers depend on the machine and its load; the script prints them next to each other so one run
compares the engines under the same conditions. Start-up (interpreter, model loads, Ray cluster) is included,
as a user would pay it; `--clips` sets how far it is amortised.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from avatarv.config import load_config
from avatarv.curate import curate_corpus
from avatarv.paths import CORPUS


def subset(corpus: Path, n: int, into: Path) -> Path:
    """A corpus folder holding the first `n` clips (manifest rows, files linked, not copied)."""
    (into / "clips").mkdir(parents=True)
    man = pd.read_parquet(corpus / "manifest.parquet").head(n) if (corpus / "manifest.parquet").exists() else None
    paths = list(man["path"]) if man is not None else [str(p.relative_to(corpus)) for p in sorted((corpus / "clips").glob("*.mp4"))[:n]]
    for p in paths:
        (into / p).symlink_to((corpus / p).resolve())
    if man is not None:
        man.to_parquet(into / "manifest.parquet")
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--out", default=None, help="optional JSON file for the numbers")
    a = ap.parse_args()
    cfg = load_config(a.profile)
    tmp = Path(tempfile.mkdtemp(prefix="curate_bench_"))
    try:
        corpus = subset(Path(a.corpus), a.clips, tmp / "corpus")
        runs = [("local x1 (in-process)", "local", 1), (f"local x{a.workers} (processes)", "local", a.workers),
                (f"ray x{a.workers}", "ray", a.workers)]
        results = {}
        for name, engine, workers in runs:
            t0 = time.perf_counter()
            res = curate_corpus(corpus, None, cfg.curate, engine=engine, workers=workers, seed=cfg.seed)
            wall = time.perf_counter() - t0
            results[name] = {"clips": len(res.clips), "wall_s": round(wall, 1), "clips_per_min": round(len(res.clips) / wall * 60, 1),
                             "kept": int(res.clips["kept"].sum())}
            print(f"{name:<24} {results[name]['clips']} clips in {wall:6.1f} s  →  {results[name]['clips_per_min']:6.1f} clips/min")
        base = results["local x1 (in-process)"]["clips_per_min"]
        for r in results.values():
            r["speedup_vs_in_process"] = round(r["clips_per_min"] / base, 2)
        ray_name, loc_name = f"ray x{a.workers}", f"local x{a.workers} (processes)"
        ratio = results[ray_name]["clips_per_min"] / results[loc_name]["clips_per_min"]
        print(f"ratio ray / local (same {a.workers} workers): {ratio:.2f}   "
              f"local x{a.workers} / in-process: {results[loc_name]['speedup_vs_in_process']:.2f}")
        if a.out:
            Path(a.out).write_text(json.dumps({"runs": results, "ray_over_local": round(ratio, 3)}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
