"""Refiner throughput: output frames per second of the super-resolution refiner at the paper shape (270×480 →
1080×1920, 1080p), local temporal window vs full temporal attention, on a GPU (or the tiny shape on the CPU).

    PYTHONPATH=src python benchmarks/refiner_throughput.py --device cuda                   # paper shape, bf16
    PYTHONPATH=src python benchmarks/refiner_throughput.py --device cpu --profile tiny     # 64 → 256 px, fp32

Random weights (the speed depends on shapes only), built from params.yaml `refiner` of the profile. Per setting:
one reference encode (the cached K/V, once per video) and `--frames` low-res frames refined with the local window in
one pass, or in chunks of `--chunk` frames with `layers·window` frames of context each side (models/refiner.py
`refine_video`: exact, memory bounded, but the context is recomputed), or with full temporal attention (every frame
attending to every frame: its cost per frame grows with the video's length). Results are
merged into reports/refiner_throughput.json under the device's name, and reports/refiner_throughput.md is rewritten
from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def measure(model, low: torch.Tensor, reference: torch.Tensor, *, window: int | None, chunk: int, repeats: int,
            device: str) -> dict:
    """Seconds for encode_reference + refining `low` (1, 3, T, h, w), best of `repeats` after one warm-up."""
    from avatarv.models.refiner import RefinerModel

    assert isinstance(model, RefinerModel)
    T = low.shape[2]

    def once():
        cache = model.encode_reference(reference)
        if window == 0:
            return model(low, cache, window=0)
        if chunk <= 0 or chunk >= T:
            return model(low, cache)
        return model.refine_video(low, cache, chunk=chunk)

    once()
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = once()
        sync(device)
        times.append(time.perf_counter() - t0)
    best = min(times)
    row = {"frames": T, "seconds": round(best, 4), "frames_per_s": round(T / best, 3),
           "out_shape": list(out.shape[-2:])}
    if device.startswith("cuda"):
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="paper", help="params.yaml profile whose `refiner` shape is measured")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default=None, help="bf16 | fp32 (default: bf16 on cuda, fp32 on cpu)")
    p.add_argument("--frames", type=int, nargs="+", default=[25, 50, 100], help="video lengths (frames)")
    p.add_argument("--chunk", type=int, default=25, help="frames per refine_video chunk (window attention)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-full", action="store_true", help="skip full temporal attention (it grows with length)")
    p.add_argument("--out", default=str(ROOT / "reports" / "refiner_throughput"))
    args = p.parse_args(argv)

    from avatarv.config import load_config
    from avatarv.models.refiner import RefinerModel

    cfg = load_config(args.profile)
    r = cfg.refiner
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")]
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    model = RefinerModel(factor=r.factor, in_size=list(r.in_size), patch=r.patch, hidden=r.hidden, layers=r.layers,
                         heads=r.heads, mlp_ratio=r.mlp_ratio, window=r.window).to(args.device, dtype).eval()
    h, w = (int(s) for s in r.in_size)
    reference = torch.rand(1, 3, max(1, r.reference_frames), h * r.factor, w * r.factor, device=args.device,
                           dtype=dtype) * 2 - 1
    rows = []
    for T in args.frames:
        low = torch.rand(1, 3, T, h, w, device=args.device, dtype=dtype) * 2 - 1
        settings = [(f"window ±{r.window}, one pass", None, 0), (f"window ±{r.window}, chunks of {args.chunk}", None,
                                                                 args.chunk)]
        settings += [] if args.no_full else [("full temporal", 0, 0)]
        for name, window, chunk in settings:
            try:
                row = measure(model, low, reference, window=window, chunk=chunk, repeats=args.repeats,
                              device=args.device)
            except torch.OutOfMemoryError:
                row = {"frames": T, "error": "out of memory"}
                torch.cuda.empty_cache()
            rows.append({"attention": name, **row})
            print(json.dumps(rows[-1]))
    result = {"device": device_name(args.device), "profile": args.profile, "dtype": str(dtype).split(".")[-1],
              "in_size": [h, w], "out_size": [h * r.factor, w * r.factor], "params_m": round(
                  sum(p.numel() for p in model.parameters()) / 1e6, 2), "tokens_per_frame": (h // r.patch) * (w // r.patch),
              "layers": r.layers, "hidden": r.hidden, "chunk": args.chunk, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    store = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    store[f"{result['device']} · {args.profile}"] = result
    out.with_suffix(".json").write_text(json.dumps(store, indent=2))
    lines = ["# Refiner throughput (benchmarks/refiner_throughput.py)", ""]
    for key, res in store.items():
        lines += [(f"## {key}: {res['in_size'][1]}x{res['in_size'][0]} → {res['out_size'][1]}x{res['out_size'][0]}, "
                  f"{res['dtype']}, {res['params_m']} M params, {res['tokens_per_frame']} tokens/frame"), "",
                  "| attention | frames | seconds | output frames/s | peak GiB |", "|---|---|---|---|---|"]
        for row in res["rows"]:
            lines.append(f"| {row['attention']} | {row['frames']} | {row.get('seconds', row.get('error'))} | "
                         f"{row.get('frames_per_s', '')} | {row.get('peak_gib', '')} |")
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
