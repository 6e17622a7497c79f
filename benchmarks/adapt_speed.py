"""Seconds of `avatarv adapt` per person: the LoRA fit on a reference clip's windows, on CPU or GPU.

The windows (face-aligned frames, measured motion, log-mel) are prepared once on the CPU (MediaPipe and dlib run
there) and saved with `--prepare`; the timed part is `train.adapt.fit`, the same call `avatarv adapt` makes, so the
script runs on a GPU machine without the face toolbox:

    python benchmarks/adapt_speed.py --prepare --ref REF.mp4 --checkpoint runs/sft/final --out windows.pt
    python benchmarks/adapt_speed.py --windows windows.pt --checkpoint runs/sft/final --device cuda --steps 30

Writes reports/adapt_speed.json (one entry per device, the card named).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("--ref", default=None)
    ap.add_argument("--windows", default="windows.pt")
    ap.add_argument("--out", default=None)
    ap.add_argument("--checkpoint", default="runs/sft/final")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--report", default="reports/adapt_speed.json")
    a = ap.parse_args()

    from avatarv.config import load_config
    from avatarv.data.datasets import WindowSet
    from avatarv.inference.pipeline import load_pipeline
    from avatarv.train.adapt import fit, prepare

    cfg = load_config("tiny")
    pipe = load_pipeline(a.checkpoint)
    if a.prepare:
        start = time.perf_counter()
        ws, _ = prepare(pipe, Path(a.ref), cfg.train.lora.frames)
        ws.save(Path(a.out or a.windows))
        print(json.dumps({"prepare_s_cpu": time.perf_counter() - start, "windows": len(ws)}))
        return
    ws = WindowSet.load(Path(a.windows))
    device = torch.device(a.device)
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as d:
        fit(cfg, pipe, ws, Path(d) / "warm", steps=2, progress=False, device=device)  # kernels, allocator
        pipe = load_pipeline(a.checkpoint)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        res = fit(cfg, pipe, ws, Path(d) / "run", steps=a.steps, progress=False, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    entry = {"device": card, "steps": a.steps, "seconds": round(seconds, 2), "s_per_step": round(seconds / a.steps, 4),
             "windows": len(ws), "batch_size": cfg.train.lora.batch_size,
             "loss_first": res.state.history[0]["loss"], "loss_last": res.state.history[-1]["loss"]}
    report = Path(a.report)
    doc = json.loads(report.read_text()) if report.exists() else {}
    doc[card] = entry
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(doc, indent=2))
    print(json.dumps(entry))


if __name__ == "__main__":
    main()
