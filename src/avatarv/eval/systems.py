"""The systems the leaderboard compares, each materialised as a folder of benchmark clips `<case_id>.mp4`:

- `real_video`: the real target clip (other scene, same person, its own audio) — the upper bound.
- `static_frame`: the reference's first frame held still for the target audio — the floor every generator must beat.
- one row per trained checkpoint found under runs/ (`runs/<stage>/final`, ablations `runs/<name>/final` too): the
  AvatarVPipeline (inference/pipeline.py) generates from the reference clip and the target audio.
References for identity/motion go to a `reference/` folder (`<case_id>.mp4` = the reference clip).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..media import read_video, write_video
from ..paths import RUNS

STAGE_ORDER = ("t2v", "a2v", "sft", "lora", "distill", "rlhf", "refiner")
# a stage's final model under a more telling row name: stage 4's final model is its DMD student (its CFG-distilled
# phase-1 student is runs/distill/ablations/cfg → "distill:cfg"); stage 5's is its GRPO model (its DPO model is
# runs/rlhf/ablations/dpo → "rlhf:dpo")
ROW_NAMES = {"distill": "distill:dmd", "rlhf": "rlhf:grpo"}


def file_stem(name: str) -> str:
    """A row name as a file or folder name: "sft:no_lip" → "sft--no_lip" (colons break Windows, some archivers and
    URL paths; slashes would nest)."""
    return name.replace(":", "--").replace("/", "__")


def row_kind(name: str) -> str:
    """The leaderboard's kind column: a curriculum stage's model, a distilled student, or an ablation."""
    if name.startswith("distill:"):
        return "distilled student"
    if name.startswith("rlhf:"):
        return "RLHF-tuned"
    return "ablation" if ":" in name or name not in STAGE_ORDER else "trained stage"


def find_checkpoints(runs: Path = RUNS) -> dict[str, Path]:
    """{row name: checkpoint folder} for every loadable `runs/**/final` (a saved pipeline, or a training stage's
    transformer/ + audio_encoder/), main stages first."""
    from ..inference.pipeline import is_saved_pipeline

    found = {}
    if not runs.exists():
        return found
    for d in sorted(runs.glob("**/final")):
        if not is_saved_pipeline(d):
            continue
        rel = d.parent.relative_to(runs)
        if rel.parts and rel.parts[0] == "eval":
            continue
        found["/".join(rel.parts).replace("/ablations/", ":")] = d  # runs/sft/ablations/x/final → "sft:x"
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    ranked = sorted(found.items(), key=lambda kv: (order.get(kv[0].split(":")[0], len(order)), ":" in kv[0], kv[0]))
    return {ROW_NAMES.get(name, name): d for name, d in ranked}


def write_references(cases: list[dict], corpus_dir: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for c in cases:
        dst = out / f"{c['case_id']}.mp4"
        if not dst.exists():
            shutil.copyfile(corpus_dir / c["ref_path"], dst)
    return out


def target_audio(c: dict, corpus_dir: Path, seconds: float = 0.0) -> tuple[np.ndarray, int]:
    """The case's driving audio: the target clip's audio, cut to `seconds` (0 = whole clip)."""
    tgt = read_video(corpus_dir / c["target_path"], need_audio=True, video=False)
    audio = tgt.audio[: int(seconds * tgt.sample_rate)] if seconds > 0 else tgt.audio
    return audio, tgt.sample_rate


def real_video(cases: list[dict], corpus_dir: Path, out: Path, seconds: float = 0.0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for c in cases:
        dst = out / f"{c['case_id']}.mp4"
        if dst.exists():
            continue
        if seconds <= 0:
            shutil.copyfile(corpus_dir / c["target_path"], dst)
            continue
        v = read_video(corpus_dir / c["target_path"], need_audio=True)
        n = int(round(seconds * v.fps))
        write_video(dst, v.frames[:n], v.fps, v.audio[: int(seconds * v.sample_rate)], v.sample_rate)
    return out


def static_frame(cases: list[dict], corpus_dir: Path, out: Path, seconds: float = 0.0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for c in cases:
        dst = out / f"{c['case_id']}.mp4"
        if dst.exists():
            continue
        ref = read_video(corpus_dir / c["ref_path"], max_frames=1)
        audio, sr = target_audio(c, corpus_dir, seconds)
        n = max(1, int(round(len(audio) / sr * 25)))
        write_video(dst, np.repeat(ref.frames[:1], n, 0), 25, audio, sr)
    return out


def generated(cases: list[dict], corpus_dir: Path, out: Path, checkpoint: Path, seed: int, steps: int = 0,
              seconds: float = 0.0, device: str = "cpu", progress: bool = False) -> Path:
    """Generate every case with a saved pipeline (reference clip + target audio); one load per checkpoint. The
    pipeline measures the reference's motion itself, over the frames it reads (`reference_frames_used`)."""
    import torch

    from ..inference.pipeline import load_pipeline

    out.mkdir(parents=True, exist_ok=True)
    todo = [c for c in cases if not (out / f"{c['case_id']}.mp4").exists()]
    if not todo:
        return out
    pipe = load_pipeline(checkpoint).to(device)
    pipe.set_progress_bar_config(disable=True)
    _, n_motion = pipe.reference_frames_used()
    for c in todo:
        ref = read_video(corpus_dir / c["ref_path"], max_frames=n_motion)
        audio, sr = target_audio(c, corpus_dir, seconds)
        torch.manual_seed(seed)  # rows must not depend on what ran before in the process (global RNG users)
        np.random.seed(seed)
        result = pipe(ref.frames, audio, sr, num_inference_steps=steps or None,
                      generator=torch.Generator().manual_seed(seed), progress=progress, crop="full")
        write_video(out / f"{c['case_id']}.mp4", result.frames, pipe.config.fps, audio, sr)
    return out
