"""Teacher vs distilled student, side by side in one run: wall-clock of a whole `AvatarVPipeline` generation (the
same reference, audio, noise and chunking), transformer passes counted, on the CPU (tiny profile) or a GPU.

    PYTHONPATH=src python benchmarks/distill_speed.py --profile tiny \
        --teacher runs/sft/final --student runs/distill/final          # the trained tiny models (CPU)
    PYTHONPATH=src python benchmarks/distill_speed.py --profile small --device cuda   # random weights, small shape

Without checkpoints the models are built at the profile's shape with random weights (speed does not depend on the
weights): the teacher as stage 3 saves it, the student as stage 4 saves it (guidance as an input, `distill.
student_steps` steps). Results are merged into reports/distill_speed.json under the device's name, and
reports/distill_speed.md is rewritten from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def random_pipelines(cfg, device: str, dtype: torch.dtype):
    from avatarv.inference.conditions import ConditionSpec
    from avatarv.inference.pipeline import pipeline_from_config
    from avatarv.models.audio_encoder import AudioEncoder
    from avatarv.models.dit import transformer_from_config
    from avatarv.models.vae import AvatarVideoVAE

    torch.manual_seed(0)
    v = cfg.vae
    vae = AvatarVideoVAE(latent_channels=v.latent_channels, base_channels=v.base_channels,
                         spatial_downsample=v.spatial_downsample, temporal_downsample=v.temporal_downsample)
    teacher = transformer_from_config(cfg.dit, v.latent_channels, sample_size=cfg.train.sft.size,
                                      temporal_downsample=v.temporal_downsample)
    teacher = teacher.with_config(condition_prior_var=0.1, motion_mean=[0.0] * 16, motion_std=[1.0] * 16)
    student = teacher.with_config(guidance_embed=True)
    audio = AudioEncoder(audio_dim=cfg.dit.audio_dim, mel_mean=-8.0, mel_std=1.0)
    conditions = ConditionSpec(motion_context_frames=cfg.conditions.motion_context_frames,
                               motion_shift=cfg.conditions.motion_shift)
    pipes = (pipeline_from_config(cfg, vae, teacher, audio, conditions),
             pipeline_from_config(cfg, vae, student, audio, conditions, steps=cfg.distill.student_steps))
    return [p.to(device, dtype) for p in pipes]


def inputs(cfg, seconds: float):
    size = cfg.train.sft.size
    n = 1 + cfg.vae.temporal_downsample * (cfg.sampling.reference_latent_frames - 1)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.stack([np.stack([128 + 90 * np.sin(x / 9 + 0.2 * k), 128 + 90 * np.cos(y / 11),
                                 128 + 50 * np.sin((x + y) / 13)], -1) for k in range(n)]).clip(0, 255).astype(np.uint8)
    sr = 16000
    t = np.arange(int(sr * seconds)) / sr
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    history = max(n, cfg.conditions.motion_context_frames)
    motion = (0.05 * np.sin(np.arange(history)[:, None] * 0.3 + np.arange(16)[None])).astype(np.float32)
    return frames, audio, sr, motion


def timed(pipe, frames, audio, sr, motion, repeats: int) -> dict:
    """Best of `repeats` wall-clock seconds of one generation, and the transformer passes it made."""
    tr = pipe.transformer
    cuda = tr.device.type == "cuda"
    pipe(frames, audio, sr, reference_motion=motion, num_inference_steps=1, progress=False, crop="full",
         generator=torch.Generator().manual_seed(0))  # warm-up (allocator, kernels)
    best, calls = float("inf"), 0
    for _ in range(repeats):
        with mock.patch.object(tr, "forward", wraps=tr.forward) as fwd:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = pipe(frames, audio, sr, reference_motion=motion, progress=False, crop="full",
                       generator=torch.Generator().manual_seed(0))
            if cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
            calls = fwd.call_count
    return {"seconds": best, "transformer_passes": calls, "steps": pipe.config.steps, "frames": len(out.frames)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--teacher", type=Path)
    p.add_argument("--student", type=Path)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "distill_speed.json")
    a = p.parse_args()
    from avatarv.config import load_config

    torch.set_num_threads(a.threads)
    cfg = load_config(a.profile)
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    if a.teacher and a.student:
        from avatarv.inference.pipeline import load_pipeline

        teacher, student = (load_pipeline(c).to(a.device, dtype) for c in (a.teacher, a.student))
        weights = f"trained ({a.teacher}, {a.student})"
    else:
        teacher, student = random_pipelines(cfg, a.device, dtype)
        weights = "random, at the profile's shape"
    frames, audio, sr, motion = inputs(cfg, a.seconds)
    rows = {name: timed(pipe, frames, audio, sr, motion, a.repeats) for name, pipe in (("teacher", teacher),
                                                                                         ("student", student))}
    device = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {a.threads} thread)"
    result = {"profile": a.profile, "weights": weights, "dtype": str(dtype).replace("torch.", ""),
              "video_seconds": a.seconds, **rows,
              "speedup": rows["teacher"]["seconds"] / rows["student"]["seconds"],
              "pass_ratio": rows["teacher"]["transformer_passes"] / rows["student"]["transformer_passes"],
              "student_seconds_per_video_second": rows["student"]["seconds"] / a.seconds,
              "teacher_seconds_per_video_second": rows["teacher"]["seconds"] / a.seconds}
    print(json.dumps({device: result}, indent=1))
    doc = json.loads(a.out.read_text()) if a.out.exists() else {}
    doc[f"{device} · {a.profile}"] = result
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(a.out)
    write_markdown(doc, a.out.with_suffix(".md"))


def write_markdown(doc: dict, path: Path) -> None:
    lines = ["# Distillation speed: teacher vs student, one generation each (benchmarks/distill_speed.py)", "",
             ("Best of repeated runs, same reference, audio, noise and chunking in one process; transformer passes "
             "counted (teacher: steps × 3 guidance branches × chunks; student: steps × 1 × chunks)."), "",
             ("| device · profile | weights | dtype | video s | teacher s (passes) | student s (passes) | speed-up | "
             "pass ratio | student s per video s |"), "|---|---|---|---|---|---|---|---|---|"]
    for key, r in doc.items():
        lines.append(f"| {key} | {r['weights']} | {r['dtype']} | {r['video_seconds']:.1f} | "
                     f"{r['teacher']['seconds']:.2f} ({r['teacher']['transformer_passes']}) | "
                     f"{r['student']['seconds']:.3f} ({r['student']['transformer_passes']}) | {r['speedup']:.1f}× | "
                     f"{r['pass_ratio']:.0f}× | {r['student_seconds_per_video_second']:.3f} |")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
