"""Peak memory of the window cache held in memory (datasets.build_windows) vs streamed from disk
(data/window_store.py), each built and read in a fresh process on the same clips (issue 18).

The VAE is a narrow one at the small profile's latent shape (16 channels, 4× spatial, no temporal compression):
the cache's size depends on that shape, not on the VAE's width. Reading = 200 SFT-size micro-batches of 8 windows.

Usage: PYTHONPATH=src python benchmarks/window_store_memory.py --corpus data/small_corpus --clips 48
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(mode: str, corpus: Path, clips: int, cache: Path) -> dict:
    import torch

    from avatarv.data.datasets import WindowBatches, build_windows, load_training_clips
    from avatarv.data.loader import LoaderSource
    from avatarv.data.window_store import stream_windows
    from avatarv.models.vae import AvatarVideoVAE

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vae = AvatarVideoVAE(latent_channels=16, base_channels=8, spatial_downsample=4, temporal_downsample=1).eval()
    rows = load_training_clips(corpus).head(clips)
    base = _peak_mib()
    t0 = time.time()
    build = stream_windows if mode == "stream" else build_windows
    ws = build(rows, vae, size=128, frames=9, cache_dir=cache, progress=False)
    t1 = time.time()
    built = _peak_mib()
    source = WindowBatches(ws, ws.indices("train"), 8, seed=0)
    if mode == "stream":
        source = LoaderSource(source, 0, 1, workers=2)
    for i in range(200):
        source.batch(i, 0, 1)
    if mode == "stream":
        source.close()
    cache_bytes = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    return {"mode": mode, "windows": len(ws), "cache_MB": cache_bytes / 1e6, "build_s": t1 - t0,
            "read_200_batches_s": time.time() - t1, "peak_rss_MiB_before": base, "peak_rss_MiB_after_build": built,
            "peak_rss_MiB_after_reading": _peak_mib()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("data/small_corpus"))
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--mode", choices=["memory", "stream"])
    a = ap.parse_args()
    if a.mode:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(measure(a.mode, a.corpus, a.clips, Path(d))))
        return
    rows = []
    for mode in ("memory", "stream"):
        out = subprocess.run([sys.executable, __file__, "--corpus", str(a.corpus), "--clips", str(a.clips), "--mode", mode],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
