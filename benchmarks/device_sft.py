"""Personality SFT of the tiny profile for more steps than its CPU budget allows, on the lent GPU (device tool).

The stage-3 code runs unchanged (train/sft.train_sft, every ablation variant); only its inputs travel differently,
because the device tool carries at most 64 MiB and its image has no MediaPipe:
- `pack` (here, after `dvc repro` reached 05_personality_sft): the window cache with latents and log-mel quantised to
  8 bits per channel (max latent error 0.013 on a unit-variance latent), the face tracker's boxes precomputed
  (WindowSet.tracked_box, what SyncLoss would track per batch), only each window's FIRST frame (JPEG; the SFT
  objective reads no other: IdentityLoss embeds ref_frames[:, 0], SyncLoss reads the boxes), the curation pairs,
  and the trained VAE, A2V generator, sync judge, face embedder and motion calibration: ~52 MB in .gpu/pack.
- `run` (on the device): rebuilds the WindowSet, trains the named variants in parallel processes on one GPU from
  the A2V checkpoint, and writes each final generator (+ history) as a tar to $OUT. Score them here with stage
  10's benchmark (eval/stage.run_systems on a runs/ folder holding sft/final and sft/ablations/<v>/final).

Usage:
  PYTHONPATH=src python benchmarks/device_sft.py pack --runs runs --out .gpu/pack
  device: pip install .whl (diffusers) into /tmp/site; PYTHONPATH=/tmp/site:src \\
          python3 benchmarks/device_sft.py run --pack .gpu/pack --steps 1500 --variants full,no_motion --out $OUT
Results: reports/condition_prior.md.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import shutil
import sys
import tarfile
import time
import types
from pathlib import Path

import numpy as np
import torch

try:
    import soundfile  # noqa: F401
except ImportError:  # the GPU image lacks it; transformers probes for it through avatarv's media imports
    _sf = types.ModuleType("soundfile")
    _sf.__spec__ = importlib.machinery.ModuleSpec("soundfile", None)
    sys.modules["soundfile"] = _sf

MODELS = {"vae": "vae", "a2v_final": "a2v/final", "sync_judge": "a2v/sync_judge", "face_embedder": "sft/face_embedder"}


def _quantise(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    scale = ((hi - lo) / 255).clamp(min=1e-8)
    return ((x - lo) / scale).round().clamp(0, 255).to(torch.uint8), lo, scale


def pack(runs: Path, out: Path) -> dict:
    import cv2

    from avatarv.config import load_config
    from avatarv.data.datasets import load_pairs
    from avatarv.train.objectives import tracked_face_boxes
    from avatarv.train.stage import StagePaths, load_stage_vae, stage_windows

    cfg = load_config("tiny")
    paths = StagePaths(runs=runs, vae=runs / "vae")
    ws = stage_windows(cfg, cfg.train.sft, paths, load_stage_vae(paths, "cpu"), progress=False)
    lat, lat_lo, lat_scale = _quantise(ws.latents.float(), (0, 2, 3, 4))
    mel, mel_lo, mel_scale = _quantise(ws.mel.float(), (0, 1, 2))
    jpgs = [cv2.imencode(".jpg", cv2.cvtColor(f.numpy(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
            for f in ws.frames[:, 0]]
    tracked = torch.cat([tracked_face_boxes(ws.frames[i : i + 64]) for i in range(0, len(ws), 64)])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    torch.save({"lat": lat, "lat_lo": lat_lo, "lat_scale": lat_scale, "mel": mel, "mel_lo": mel_lo, "mel_scale": mel_scale,
                "motion": ws.motion, "face_box": ws.face_box, "mouth_box": ws.mouth_box, "identity": ws.identity,
                "identities": ws.identities, "meta": ws.meta.drop(columns=["caption"]), "jpgs": jpgs, "tracked": tracked,
                "pairs": load_pairs(paths.curated, ws), "frames_shape": tuple(ws.frames.shape)}, out / "windows.pt")
    for name, rel in MODELS.items():
        shutil.copytree(runs / rel, out / name, ignore=shutil.ignore_patterns("checkpoints", "history.jsonl"))
    shutil.copy(runs / "sft" / "motion_calibration.json", out / "motion_calibration.json")
    err = float((lat.float() * lat_scale + lat_lo - ws.latents.float()).abs().max())
    return {"windows": len(ws), "latent_max_error": err, "MB": sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6}


def unpack_windows(pack_dir: Path):
    """The WindowSet of a pack (frames: only frame 0 of each window, the rest zeros) and the curation pairs."""
    import cv2

    from avatarv.data.datasets import WindowSet

    d = torch.load(pack_dir / "windows.pt", weights_only=False)
    frames = torch.zeros(d["frames_shape"], dtype=torch.uint8)
    for i, b in enumerate(d["jpgs"]):
        frames[i, 0] = torch.from_numpy(cv2.cvtColor(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    ws = WindowSet(latents=d["lat"].float() * d["lat_scale"] + d["lat_lo"], frames=frames, motion=d["motion"],
                   mel=d["mel"].float() * d["mel_scale"] + d["mel_lo"], face_box=d["face_box"], mouth_box=d["mouth_box"],
                   identity=d["identity"], meta=d["meta"].assign(caption=""), identities=d["identities"],
                   tracked_box=d["tracked"])
    return ws, d["pairs"]


def _runs_from_pack(pack_dir: Path, runs: Path) -> None:
    for name, rel in MODELS.items():
        if not (runs / rel).exists():
            shutil.copytree(pack_dir / name, runs / rel)
    shutil.copy(pack_dir / "motion_calibration.json", runs / "sft" / "motion_calibration.json")


def _train_variant(variant: str, steps: int, pack_dir: str, runs: str, device: str, queue) -> None:
    try:
        from avatarv.config import load_config
        from avatarv.models.face_embedder import FaceEmbedder
        from avatarv.train import sft
        from avatarv.train.stage import StagePaths, load_stage_vae

        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        ws, pairs = unpack_windows(Path(pack_dir))
        sft.load_pairs = lambda curated, ws_: pairs  # the pack's pairs (no curated/ folder travels)
        cfg = load_config("tiny")
        paths = StagePaths(runs=Path(runs), vae=Path(runs) / "vae")
        vae = load_stage_vae(paths, device)
        embedder = FaceEmbedder.from_pretrained(str(Path(runs) / "sft" / "face_embedder")).eval().to(device)
        losses = sft.ablation_variants(dict(cfg.train.sft.losses))[variant]
        t0 = time.time()
        out = sft.train_sft(cfg, paths, ws, vae, embedder, losses=losses, name="sft" if variant == "full" else variant,
                            steps=steps, resume=False, progress=False)
        metrics = {k: v for k, v in out.metrics.items() if isinstance(v, (int, float, str))}
        queue.put((variant, time.time() - t0, metrics, str(out.final_dir)))
    except Exception as e:  # noqa: BLE001 -- a failed variant is a row, not a hung parent
        import traceback

        traceback.print_exc()
        queue.put((variant, -1.0, {"error": repr(e)}, ""))


def run(pack_dir: Path, steps: int, variants: list[str], out: Path, runs: Path, device: str) -> dict:
    import multiprocessing as mp

    (runs / "a2v").mkdir(parents=True, exist_ok=True)
    (runs / "sft").mkdir(parents=True, exist_ok=True)
    _runs_from_pack(pack_dir, runs)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_train_variant, args=(v, steps, str(pack_dir), str(runs), device, queue)) for v in variants]
    t0 = time.time()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    out.mkdir(parents=True, exist_ok=True)
    for variant, _, _, final in results:
        if final:
            with tarfile.open(out / f"{variant}_final.tar", "w") as tf:
                tf.add(final, arcname="final")
                tf.add(Path(final).parent / "history.jsonl", arcname="history.jsonl")
    summary = {"steps": steps, "variants": variants, "seconds": time.time() - t0, "results": results,
               "device": torch.cuda.get_device_name(0) if device == "cuda" else device}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--out", type=Path, default=Path(".gpu/pack"))
    r = sub.add_parser("run")
    r.add_argument("--pack", type=Path, default=Path(".gpu/pack"))
    r.add_argument("--steps", type=int, default=1500)
    r.add_argument("--variants", default="full,no_motion")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--runs", type=Path, default=Path("/tmp/device_sft_runs"))
    r.add_argument("--device", default="cuda")
    a = ap.parse_args()
    if a.cmd == "pack":
        print(json.dumps(pack(a.runs, a.out), indent=1))
    else:
        print(json.dumps(run(a.pack, a.steps, a.variants.split(","), a.out, a.runs, a.device), indent=1, default=str))


if __name__ == "__main__":
    main()
