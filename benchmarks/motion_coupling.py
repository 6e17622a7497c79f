"""Does the generated video follow the motion stream? A diagnostic for any generator checkpoint (stop 14).

For benchmark cases (reference clip + target audio, stage 10's cross-scene benchmark) it generates a short clip and
regenerates it with one thing changed, same seed:
- `tokens`: the motion tokens the transformer reads offset by +3 (token units, i.e. 3 std) on yaw, dx or mouth at
  every denoising call: what the jointly denoised motion stream can do to the video;
- `plan`: the face-position plan (models/motion.py eye_track → models/motion_plan.py) offset by +0.5 latent px
  in x after its first frame (2 px at 64 px): what the plan-shifted condition prior does (`motion_shift` models);
- `seed`: another noise seed, the scale of a change that matters.
It reports the mean absolute pixel change (grey levels) and the face box centre's mean move in pixels.

Usage: PYTHONPATH=src python benchmarks/motion_coupling.py runs/sft/final [--cases 2 --seconds 1.2 --out FILE.json]
Results: reports/motion_shift.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from unittest import mock

import numpy as np
import torch


def _generate(pipe, ref_frames, audio, sr, seed: int, token_offset=None, plan_offset=None, reference_motion=None):
    from avatarv.inference import motion_planner as planner_module

    tr = pipe.transformer
    real_forward, real_plan = tr.forward, planner_module.motion_plan

    def forward(latents, timestep, motion=None, *a, **k):
        return real_forward(latents, timestep, motion if motion is None or token_offset is None else motion + token_offset,
                            *a, **k)

    def plan(*a, **k):
        out = real_plan(*a, **k).copy()
        if plan_offset is not None:
            out[1:] += plan_offset  # after the start pose: the face is planned 0.5 latent px to the right
        return out

    with mock.patch.object(tr, "forward", side_effect=forward), mock.patch.object(planner_module, "motion_plan", side_effect=plan):
        out = pipe(ref_frames, audio, sr, reference_motion=reference_motion, generator=torch.Generator().manual_seed(seed),
                   progress=False, crop="full")
    return out.frames


def generate_variants(pipe, ref_frames, audio, sr, seed: int = 0, reference_motion=None) -> dict[str, np.ndarray]:
    """The base clip and each changed one (`base`, `seed`, `tokens +3 <channel>`, `plan +0.5 latent px in x`), as
    (T, H, W, 3) uint8 frames; `reference_motion` given = nothing is measured with MediaPipe (a GPU machine)."""
    from avatarv.models.motion import CHANNELS

    changes: dict[str, dict] = {"base": {}, "seed": {"seed": seed + 1}}
    for ch in ("yaw", "dx", "mouth_open"):
        off = torch.zeros(16)
        off[CHANNELS.index(ch)] = 3.0
        changes[f"tokens +3 {ch}"] = {"token_offset": off}
    if pipe.conditions.motion_shift:
        changes["plan +0.5 latent px in x"] = {"plan_offset": np.array([0.5, 0.0], np.float32)}
    return {name: _generate(pipe, ref_frames, audio, sr, kw.pop("seed", seed), reference_motion=reference_motion, **kw)
            for name, kw in changes.items()}


def compare(variants: dict[str, np.ndarray]) -> list[dict]:
    """Mean absolute pixel change (grey levels) and mean face-box centre move (px) of each variant against `base`."""
    from avatarv.faces import track_face

    def centre(frames):
        boxes = np.asarray(track_face(frames).boxes, np.float32)
        return (boxes[:, :2] + boxes[:, 2:4]) / 2 if boxes.ndim == 2 and len(boxes) else np.full((len(frames), 2), np.nan)

    base = variants["base"].astype(np.float32)
    bc = centre(variants["base"])
    return [{"change": name, "pixel_change": float(np.abs(frames.astype(np.float32) - base).mean()),
             "face_centre_move_px": [round(float(v), 3) for v in np.nanmean(centre(frames) - bc, axis=0)]}
            for name, frames in variants.items() if name != "base"]


def coupling(checkpoint: Path, n_cases: int = 2, seconds: float = 1.2, seed: int = 0) -> dict:
    from avatarv.config import load_config
    from avatarv.eval import systems
    from avatarv.eval.benchmark import make_benchmark
    from avatarv.inference.pipeline import load_pipeline
    from avatarv.media import read_video
    from avatarv.paths import CORPUS

    torch.set_num_threads(2)
    cfg = load_config()
    pipe = load_pipeline(checkpoint)
    pipe.set_progress_bar_config(disable=True)
    cases = make_benchmark(Path(CORPUS), cfg.eval.benchmark_version, cfg.eval.benchmark_clips)["cases"][:n_cases]
    _, n_motion = pipe.reference_frames_used()
    rows = []
    for c in cases:
        ref = read_video(Path(CORPUS) / c["ref_path"], max_frames=n_motion)
        audio, sr = systems.target_audio(c, Path(CORPUS), seconds)
        rows += [{"case": c["case_id"], **r} for r in compare(generate_variants(pipe, ref.frames, audio, sr, seed))]
    return {"checkpoint": str(checkpoint), "seconds": seconds, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--cases", type=int, default=2)
    p.add_argument("--seconds", type=float, default=1.2)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    doc = coupling(a.checkpoint, a.cases, a.seconds)
    text = json.dumps(doc, indent=1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(a.out)
    for r in doc["rows"]:
        print(f"{r['case']:16s} {r['change']:18s} pixel change {r['pixel_change']:6.2f}  face centre move {r['face_centre_move_px']}")


if __name__ == "__main__":
    main()
