"""Stage 13_real_faces: "a real person in, that person out", measured on footage framed as real footage is.

Each case is one person in two clips framed like real footage (eval/real_footage.py: 16:9, the face 12-28 % of the
width, a natural photo behind, 24 or 30 fps): the reference clip (what a user uploads, with its own speech) and a
second clip of the same person saying something else, whose audio drives generation and whose frames are the real
video to compare with. Systems, all through `avatarv generate`'s path (face-aligned working space, paste-back):

- `real`: the second clip itself (the upper bound: its own face and lips);
- `full_frame`: the trained pipeline fed the whole frame as a centre square (`--crop full`, what `generate` did
  before the face-aligned working space): the baseline the alignment has to beat;
- `base`: the trained pipeline (runs/sft/final) through the face-aligned working space;
- `adapted`: the same with the per-person LoRA fitted on the reference clip (train/adapt.py), timed.

People: identities held out of every training stage (synthetic, split "holdout") and the corpus's real photo
identities. The package photos hold only eight real faces and the corpus trains on all of them, so no real face is
held out here; the report says so next to their rows.

Measured per clip: face found (share of sampled frames) and identity distance to the reference (the self-check's
dlib judge, which no training loss uses), lip-sync confidence (the evaluation's sync expert, runs/eval), and the
adaptation's seconds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.identities import build_identities
from ..faces import track_face
from ..media import normalize_video, write_video
from ..paths import CORPUS, RUNS
from .real_footage import footage_clip

STAGE = "13_real_faces"
SYSTEMS = ("real", "full_frame", "base", "adapted")


@dataclass
class Case:
    case_id: str
    identity: str
    kind: str  # "held-out synthetic" | "real photo (trained on)"
    fps: int
    face_fraction: float
    reference: str  # mp4 paths
    target: str


def pick_people(cfg, manifest: pd.DataFrame) -> list[tuple[str, str]]:
    """(identity, kind) for the held-out synthetic people first, then the real photo people."""
    first = manifest.groupby("identity").agg(split=("split", "first"), source=("identity_source", "first"))
    held = [i for i in first.index if first.at[i, "split"] == "holdout" and first.at[i, "source"] == "procedural"]
    real = [i for i in first.index if str(first.at[i, "source"]).startswith("photo:")]
    rc = cfg.real_faces
    return [(i, "held-out synthetic") for i in held[: rc.synthetic_cases]] + \
           [(i, "real photo (trained on)") for i in real[: rc.real_cases]]


def build_cases(cfg, out: Path, manifest: pd.DataFrame) -> list[Case]:
    """Render (or reuse) each case's reference and target clips."""
    rc = cfg.real_faces
    people = pick_people(cfg, manifest)
    idents = {i.identity: i for i in build_identities(cfg.corpus.identities, cfg.seed, list(cfg.corpus.languages))}
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for k, (name, kind) in enumerate(people):
        fps = (24, 30)[k % 2]
        frac = float(np.linspace(0.12, 0.28, max(2, len(people)))[k])
        case = Case(f"{name}_{fps}fps", name, kind, fps, frac, str(out / f"{name}_ref.mp4"), str(out / f"{name}_target.mp4"))
        for path, seconds, seed, bg in ((case.reference, rc.reference_seconds, 0, k), (case.target, rc.speech_seconds, 1, k + 1)):
            if not Path(path).exists():
                c = footage_clip(idents[name], seconds=seconds, fps=fps, face_fraction=frac, seed=cfg.seed + seed,
                                 background=bg)
                write_video(path, c.frames, fps, c.audio, c.sample_rate)
        cases.append(case)
    return cases


def sync_confidence(expert, path: Path) -> float:
    from ..models.sync_expert import prepare
    from .sync_expert import sync_scores

    v = normalize_video(path, need_audio=True)
    track = track_face(v.frames)
    return float(sync_scores(expert, prepare(v.frames, v.audio, v.sample_rate, track.boxes, v.fps))["conf_offset_weighted"])


def generate(pipe, case: Case, path: Path, seed: int, crop: str = "face") -> dict:
    import torch

    from ..inference.self_check import self_check
    from ..media import as_rate

    start = time.perf_counter()
    result = pipe(case.reference, case.target, generator=torch.Generator().manual_seed(seed), progress=False,
                  crop=crop)
    seconds = time.perf_counter() - start
    result.save(path, fps=as_rate(case.fps))
    ref0 = normalize_video(case.reference).frames[0]
    return {"generate_s": seconds, **_check(self_check(result.frames, ref0))}


def _check(sc) -> dict:
    return {"face_found": sc.face_found_frac, "identity_distance": sc.identity_distance,
            "same_person": sc.identity_distance is not None and sc.identity_distance <= 0.6}


def run(cfg, out: Path = RUNS / "real_faces", checkpoint: Path = RUNS / "sft" / "final",
        expert_dir: Path = RUNS / "eval" / "sync_expert", progress: bool = True) -> pd.DataFrame:
    """One row per (case, system)."""
    from tqdm.auto import tqdm

    from ..data.synthesize import read_manifest
    from ..inference.pipeline import load_pipeline
    from ..inference.self_check import self_check
    from ..models.sync_expert import load_sync_expert
    from ..train.adapt import adapt, load_adapter

    manifest = read_manifest(CORPUS)
    cases = build_cases(cfg, out / "clips", manifest)
    expert = load_sync_expert(str(expert_dir))
    rows = []
    for case in tqdm(cases, desc="real faces", disable=not progress):
        ref0 = normalize_video(case.reference).frames[0]
        real = {"system": "real", **_check(self_check(normalize_video(case.target).frames, ref0))}
        rows.append({**asdict(case), **real, "sync_conf": sync_confidence(expert, Path(case.target))})
        full_path = out / "generated" / "full_frame" / f"{case.case_id}.mp4"
        row = generate(load_pipeline(checkpoint), case, full_path, cfg.seed, crop="full")
        rows.append({**asdict(case), "system": "full_frame", **row, "sync_conf": sync_confidence(expert, full_path)})
        base_path = out / "generated" / "base" / f"{case.case_id}.mp4"
        row = generate(load_pipeline(checkpoint), case, base_path, cfg.seed)
        rows.append({**asdict(case), "system": "base", **row, "sync_conf": sync_confidence(expert, base_path)})
        start = time.perf_counter()
        fitted = adapt(cfg, load_pipeline(checkpoint), checkpoint, Path(case.reference), root=out / "adapters",
                       steps=cfg.real_faces.adapt_steps, progress=False)
        adapt_s = time.perf_counter() - start
        adapted_path = out / "generated" / "adapted" / f"{case.case_id}.mp4"
        pipe = load_adapter(load_pipeline(checkpoint), fitted.adapter_dir)
        row = generate(pipe, case, adapted_path, cfg.seed)
        rows.append({**asdict(case), "system": "adapted", **row, "sync_conf": sync_confidence(expert, adapted_path),
                     "adapt_s": adapt_s if not fitted.cached else float("nan"), "adapt_steps": fitted.metrics["steps"],
                     "adapt_loss_ratio": fitted.metrics.get("loss_ratio")})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, system): mean face found, share of clips with a face in >= 95 % of frames, share judged the same
    person (dlib distance <= 0.6), median distance, mean sync confidence."""
    g = df.groupby(["kind", "system"], sort=False)
    return pd.DataFrame({
        "clips": g.size(),
        "face_found_mean": g["face_found"].mean(),
        "face_in_95pct_frames": g["face_found"].apply(lambda s: float((s >= 0.95).mean())),
        "same_person_frac": g["same_person"].mean(),
        "identity_distance_median": g["identity_distance"].median(),
        "sync_conf_mean": g["sync_conf"].mean(),
    }).reset_index()


def write_report(df: pd.DataFrame, summ: pd.DataFrame, path: Path, gpu_note: str = "") -> Path:
    """reports/real_faces.md: base vs adapted vs the real clip, side by side, with the adaptation's time."""
    lines = [
        "# A real person in, that person out",
        "",
        "Generated by DVC stage `13_real_faces` (`notebooks/13_real_faces.ipynb`, `src/avatarv/eval/real_faces.py`).",
        "Systems: `real` (the person's own second clip), `full_frame` (the whole frame as a centre square, `--crop full`,",
        "the old behaviour), `base` (face-aligned working space + paste-back), `adapted` (the same after `avatarv adapt`).",
        "Each case: a reference clip framed as real footage (16:9, face 12-28 % of the width, natural photo behind,",
        "24 or 30 fps) and a second clip of the same person whose speech drives generation. `avatarv generate`'s path:",
        "face-aligned working space, paste-back at the source's size (without the stage-08 refiner, which changes the",
        "64-px face by +0.03 dB at this scale). Judge for face and identity: dlib (HOG + ResNet",
        "descriptor), used by no training loss; same person <= 0.6. Lip sync: the evaluation's sync expert.",
        "",
        "The corpus trains on every real face the installed packages ship (eight), so the real-photo rows are people",
        "the model has seen; the held-out people are synthetic identities no stage trains on.",
        "",
        "## Summary",
        "",
        _md(summ),
        "",
        "## Per clip",
        "",
        _md(df[["case_id", "kind", "system", "fps", "face_fraction", "face_found", "identity_distance", "sync_conf",
                "generate_s", "adapt_s"]].round(3)),
        "",
    ]
    adapted = df[df["system"] == "adapted"]
    ad = adapted["adapt_s"].dropna()
    if len(ad):
        lines.append(f"Adaptation on CPU: {ad.mean():.0f} s per person on average ({len(ad)} people, "
                     f"{int(adapted['adapt_steps'].iloc[0])} LoRA steps each, 2-core machine).")
    if gpu_note:
        lines.append(gpu_note)
    path.write_text("\n".join(lines) + "\n")
    return path


def _md(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        out.append("| " + " | ".join("" if (isinstance(v, float) and np.isnan(v)) else
                                     (f"{v:.3f}" if isinstance(v, float) else str(v)) for v in r) + " |")
    return "\n".join(out)


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """`img` scaled to fit (w, h), centred on black (a square model output keeps its shape)."""
    import cv2

    s = min(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                   interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    canvas = np.zeros((h, w, 3), np.uint8)
    y, x = (h - r.shape[0]) // 2, (w - r.shape[1]) // 2
    canvas[y : y + r.shape[0], x : x + r.shape[1]] = r
    return canvas


def montage(df: pd.DataFrame, out: Path, path: Path, width: int = 320) -> Path:
    """One row per case: the reference's first frame, then the middle frame of the real target, the full-frame,
    base and adapted videos, each at `width` px wide (the full-frame output is the model's square, shown as is)."""
    import cv2

    rows = []
    for case_id, g in df.groupby("case_id", sort=False):
        first = g.iloc[0]
        tiles = [normalize_video(first["reference"]).frames[0]]
        for p in (first["target"], *(out / "generated" / s / f"{case_id}.mp4" for s in SYSTEMS[1:])):
            f = normalize_video(p).frames
            tiles.append(f[len(f) // 2])
        h = int(round(tiles[0].shape[0] * width / tiles[0].shape[1]))
        rows.append(np.concatenate([_fit(t, width, h) for t in tiles], 1))
    grid = np.concatenate(rows, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid[..., ::-1])
    return path


def sample_gif(df: pd.DataFrame, out: Path, path: Path, system: str = "adapted", width: int = 256,
               seconds: float = 3.0, fps: float = 10.0) -> Path:
    """The README's animated sample: the first held-out case's reference clip beside `system`'s output for the other
    clip's speech, both at the source's 16:9 framing, every `step`-th frame shown for `step` frame times (real-time
    playback at about `fps` pictures a second; written atomically)."""
    import cv2
    from PIL import Image

    from ..media import atomic_path

    held = df[df["kind"].str.startswith("held-out")]
    case = (held if len(held) else df).iloc[0]
    ref = normalize_video(case["reference"])
    gen = normalize_video(out / "generated" / system / f"{case['case_id']}.mp4")
    n = min(len(gen.frames), round(seconds * gen.fps))
    step = max(1, round(gen.fps / fps))
    picks = np.arange(0, n, step)
    h = int(round(ref.frames.shape[1] * width / ref.frames.shape[2]))
    frames = []
    for i in picks:
        tiles = [_fit(ref.frames[min(i, len(ref.frames) - 1)], width, h), _fit(gen.frames[i], width, h)]
        for t, label in zip(tiles, ("reference", f"avatarv ({system})")):
            cv2.putText(t, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        frames.append(Image.fromarray(np.concatenate(tiles, 1)))
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 * step / gen.fps),
                       loop=0, optimize=True)
    return path


def gpu_adapt_note(path: Path) -> str:
    """The adaptation's GPU time from benchmarks/adapt_speed.py's committed report, as one line for the report."""
    import json

    if not Path(path).exists():
        return "Adaptation on GPU: not measured (run benchmarks/adapt_speed.py on a GPU machine)."
    doc = json.loads(Path(path).read_text())
    gpus = {k: v for k, v in doc.items() if isinstance(v, dict) and k != "cpu" and not k.startswith("cpu")}
    return "; ".join(f"Adaptation on GPU ({name}): {v['seconds']:.1f} s for {v['steps']} LoRA steps of the same fit "
                     f"(benchmarks/adapt_speed.py, reports/adapt_speed.md)" for name, v in gpus.items()) + "."
