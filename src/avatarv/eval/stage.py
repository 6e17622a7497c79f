"""Stage 10_eval in one call: build the cross-scene benchmark, train the sync expert on the corpus, validate every
metric on known answers, materialise each system's benchmark clips and score them (seed: "How Good Is It?").

`run_eval_stage(cfg)` returns the stage document written to reports/10_eval/metrics.json; per-system per-clip
rows go to reports/10_eval/systems/<name>.json. The notebook only calls this and plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import AvatarVError
from ..faces import track_face
from ..media import read_video
from ..models.sync_expert import load_sync_expert
from ..paths import CORPUS, RUNS, stage_report_dir
from ..train.sync_expert import clean_clips, load_tracked_clip, spread_over_identities, train_expert
from . import identity, systems
from .benchmark import make_benchmark
from .real_photos import package_natural_photos
from .runner import EvalSettings, Scorer, evaluate_dirs, write_json
from .validation import validate_identity_clips, validate_identity_photos, validate_quality, validate_sync

STAGE = "10_eval"


def validate(cfg, corpus: Path, manifest: pd.DataFrame, expert, progress: bool = True) -> dict:
    hold = clean_clips(manifest, "holdout")
    t0 = time.time()
    sync_rows = spread_over_identities(hold, cfg.eval.validation_clips)
    sync = validate_sync(expert, [load_tracked_clip(corpus, r) for _, r in sync_rows.iterrows()],
                         max_offset=cfg.eval.max_offset_frames)
    t1 = time.time()
    embs, labels, scenes, frames_for_quality = [], [], [], []
    for _, r in hold.iterrows():
        v = read_video(corpus / r["path"])
        tr = track_face(v.frames)
        embs.append(identity.centroid(identity.embed_clip(v.frames, tr, 3)))
        labels.append(r["identity"])
        scenes.append(r["scene_key"] if "scene_key" in r else f"{r['identity']}_s{r['scene']}")
        if r["identity"] not in {f[0] for f in frames_for_quality}:
            frames_for_quality.append((r["identity"], v.frames[len(v.frames) // 2]))
    id_clips = validate_identity_clips(np.stack(embs), labels, scenes)
    t2 = time.time()
    id_photos = validate_identity_photos(n_views=3, seed=cfg.seed)
    t3 = time.time()
    qual = validate_quality({"photos": list(package_natural_photos()), "corpus": [f for _, f in frames_for_quality[:4]]})
    return {"sync": sync, "identity_corpus": id_clips, "identity_photos": id_photos, "quality": qual,
            "seconds": {"sync": t1 - t0, "identity_corpus": t2 - t1, "identity_photos": t3 - t2, "quality": time.time() - t3}}


def run_systems(cfg, corpus: Path, cases: list[dict], settings: EvalSettings, out_root: Path, report_dir: Path,
                progress: bool = True) -> dict:
    import shutil

    for stale in (out_root / "reference", out_root / "systems"):  # clips of an earlier benchmark must not be scored
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(report_dir / "systems", ignore_errors=True)
    refs = systems.write_references(cases, corpus, out_root / "reference")
    secs = cfg.eval.benchmark_seconds  # every system speaks the same first `secs` of the target audio
    plan: dict[str, dict] = {
        "real_video": {"kind": "upper bound", "make": lambda d: systems.real_video(cases, corpus, d, secs)},
        "static_frame": {"kind": "baseline", "make": lambda d: systems.static_frame(cases, corpus, d, secs)},
    }
    for name, ckpt in systems.find_checkpoints().items():
        plan[name] = {"kind": systems.row_kind(name),
                      "checkpoint": str(ckpt),
                      "make": lambda d, ckpt=ckpt: systems.generated(cases, corpus, d, ckpt, cfg.seed, cfg.eval.generate_steps,
                                                                     secs)}
    scorer = Scorer(settings)
    out: dict = {}
    (report_dir / "systems").mkdir(parents=True, exist_ok=True)
    for name, p in plan.items():
        t0 = time.time()
        entry = {"kind": p["kind"], "checkpoint": p.get("checkpoint", "")}
        try:
            d = p["make"](out_root / "systems" / systems.file_stem(name))
            t1 = time.time()
            doc = evaluate_dirs(d, refs, settings, progress=progress, scorer=scorer)
            write_json(doc, report_dir / "systems" / f"{systems.file_stem(name)}.json")
            entry.update(aggregate=doc["aggregate"], make_s=t1 - t0, score_s=time.time() - t1)
        except (AvatarVError, OSError, RuntimeError, ValueError) as e:  # a broken checkpoint is a row, not a crash
            entry.update(error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        out[name] = entry
    return out


def run_eval_stage(cfg, corpus: Path = CORPUS, out_root: Path = RUNS / "eval", progress: bool = True) -> dict:
    t0 = time.time()
    report_dir = stage_report_dir(STAGE)
    corpus = Path(corpus)
    bench = make_benchmark(corpus, cfg.eval.benchmark_version, cfg.eval.benchmark_clips)
    manifest = pd.read_parquet(corpus / "manifest.parquet")
    expert_info = train_expert(cfg, corpus, manifest, out_root / "sync_expert", progress)
    settings = EvalSettings.from_config(cfg, sync_expert=expert_info["path"])
    val = validate(cfg, corpus, manifest, load_sync_expert(expert_info["path"]), progress)
    sys_rows = run_systems(cfg, corpus, bench["cases"], settings, out_root, report_dir, progress)
    doc = {
        "stage": STAGE, "profile": cfg.profile,
        "benchmark": {k: bench[k] for k in ("version", "n_cases", "fingerprint", "identities", "rule")},
        "sync_expert": {k: v for k, v in expert_info.items() if k != "loss_curve"},
        "validation": val, "systems": sys_rows, "backends": settings.backends(),
        "seconds": time.time() - t0,
    }
    write_json(doc, report_dir / "metrics.json")
    (report_dir / "sync_expert_loss.json").write_text(json.dumps(expert_info["loss_curve"]))
    return doc
