"""Stage 3, personality SFT (seed: "each example has a target video paired with reference clips of the same person
in different scenes ... Sparse Reference Attention and the motion representation stream are activated ...
Human-aware auxiliary losses").

Starts from the stage-2 generator. Each sample is a curation pair: the reference window (another scene of the same
person, clean, with its motion tokens) enters through the cached reference K/V; the target window is generated
from noise with its audio, its motion stream denoised jointly. Loss = flow + the switchable terms of
params.yaml `train.sft.losses` (objectives.py). A weight of 0 turns a term off; `motion: 0` turns the motion
stream off entirely (the "generic motion" model). `run_ablations` trains one model per switched-off term (same
seed, steps and data) and scores all of them with train/proof.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..config import Config
from ..data.datasets import PairBatches, WindowSet, load_pairs
from ..inference.conditions import ConditionSpec
from .identity import train_face_embedder
from .loop import loss_drop, make_accelerator, train_loop
from .objectives import FlowSpec, IdentityLoss, SyncLoss, flow_loss
from .stage import (
    StageOutcome,
    StagePaths,
    ensure_condition_prior,
    init_generator,
    load_stage_vae,
    load_sync_judge,
    pick_device,
    stage_windows,
    validation_loss,
)

STAGE = "sft"
AUX_TERMS = ("face", "lip", "identity", "motion")


def sft_spec(cfg: Config, losses: dict[str, float]) -> FlowSpec:
    st = cfg.train.sft
    motion = float(losses.get("motion", 0)) > 0
    conditions = ConditionSpec(audio=True, reference=True, motion=motion, start_frame=True,
                               motion_context_frames=cfg.conditions.motion_context_frames if motion else 0,
                               motion_shift=motion and cfg.conditions.motion_shift)
    return FlowSpec(conditions, bridge_prob=st.bridge_prob, cond_dropout=st.cond_dropout, timestep_shift=st.timestep_shift,
                    losses=dict(losses))


def ablation_variants(losses: dict[str, float]) -> dict[str, dict[str, float]]:
    """The full objective, flow only, and the full objective minus each aux term that is on."""
    variants = {"full": dict(losses), "flow_only": dict.fromkeys(losses, 0.0)}
    for term in AUX_TERMS:
        if float(losses.get(term, 0)) > 0:
            variants[f"no_{term}"] = {**losses, term: 0.0}
    return variants


def train_sft(cfg: Config, paths: StagePaths, ws: WindowSet, vae, embedder, *, losses: dict[str, float],
              name: str = STAGE, steps: int | None = None, resume: bool = True, progress: bool = True,
              accelerator=None) -> StageOutcome:
    st = cfg.train.sft
    total = int(steps if steps is not None else st.steps)
    device = next(vae.parameters()).device
    td = vae.config.temporal_downsample
    pairs = load_pairs(paths.curated, ws)
    spec = sft_spec(cfg, losses)
    context = spec.conditions.motion_context_frames
    source = PairBatches(ws, pairs, st.batch_size, seed=cfg.seed + 2, splits=("train",), td=td, context_frames=context)
    identity = IdentityLoss(vae, embedder) if float(losses.get("identity", 0)) > 0 else None
    sync = None
    if float(losses.get("sync", 0)) > 0:
        vae.requires_grad_(False)
        sync = SyncLoss(vae, load_sync_judge(cfg, paths, progress=progress, device=device))
    model = init_generator(cfg, vae.config, paths.final("a2v")).to(device)
    ensure_condition_prior(cfg, model, ws, ws.indices("train"))
    if spec.conditions.motion:  # the motion stream's token units: per-channel statistics of the training motion
        model.transformer = model.transformer.with_config(
            **motion_statistics(ws.motion[torch.as_tensor(ws.indices("train"))]))

    def loss_fn(m, batch, gen, step):
        return flow_loss(m, batch, gen, spec, identity=identity, sync=sync, td=td)

    run_dir = paths.run_dir(STAGE) if name == STAGE else paths.run_dir(STAGE) / "ablations" / name
    res = train_loop(model, loss_fn, source, st, run_dir, seed=cfg.seed + 2, total_steps=total, resume=resume,
                     accelerator=accelerator or make_accelerator(st.mixed_precision, str(device)), progress=progress)
    final = res.ema_model or res.model
    final_dir = run_dir / "final"
    calibration = motion_calibration(paths) if spec.conditions.motion else None
    final.save(final_dir, vae, cfg, dataclasses.replace(spec.conditions, motion_calibration=calibration))
    holdout = PairBatches(ws, pairs, st.batch_size, seed=0, splits=("holdout",), td=td, context_frames=context)
    val = validation_loss(final, ws, None, spec, seed=cfg.seed, pair_items=holdout.items, td=td,
                          max_items=2 * st.eval_pairs)
    metrics = {"steps": total, "val_flow_holdout_pairs": val, **loss_drop(res.state.history),
               "losses": dict(losses), "train_pairs": len(source), "holdout_pairs": len(holdout),
               "resumed_from": res.resumed_from}
    return StageOutcome(name, run_dir, final_dir, res.state.history, metrics)


CALIBRATION_CLIPS = 12


def motion_statistics(motion: torch.Tensor, floor: float = 0.01) -> dict[str, list[float]]:
    """{motion_mean, motion_std}: per-channel mean and std (at least `floor`) over every frame of (N, T, 16)."""
    flat = motion.reshape(-1, motion.shape[-1]).double()
    return {"motion_mean": [round(float(v), 6) for v in flat.mean(0)],
            "motion_std": [round(max(float(v), floor), 6) for v in flat.std(0)]}


def motion_calibration(paths: StagePaths, n_clips: int = CALIBRATION_CLIPS) -> dict:
    """The map from motion measured on video (what inference gets from a reference clip) to the corpus ground truth
    the motion stream is trained on, fitted once on training-identity clips into runs/sft/motion_calibration.json
    and saved with every motion-stream variant's pipeline (its conditions; inference/motion_planner.py applies it)."""
    import json

    import pandas as pd

    from ..media import atomic_path, read_video
    from ..models.motion import extract_motion, fit_motion_calibration, motion_from_manifest_row

    out = paths.run_dir(STAGE) / "motion_calibration.json"
    if out.exists():
        return json.loads(out.read_text())
    manifest = pd.read_parquet(Path(paths.corpus) / "manifest.parquet")
    rows = manifest[(manifest["split"] == "train") & (manifest["distractor"].fillna("") == "")].sort_values("clip_id")
    rows = rows.groupby("identity").head(1).head(n_clips)
    measured, truth = [], []
    for _, r in rows.iterrows():
        frames = read_video(Path(paths.corpus) / r["path"]).frames
        measured.append(extract_motion(frames))
        truth.append(motion_from_manifest_row(r))
    cal = {**fit_motion_calibration(measured, truth), "clips": [str(c) for c in rows["clip_id"]]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(cal, indent=1))
    return cal


def prepare(cfg: Config, paths: StagePaths, progress: bool = True):
    """VAE, window cache and the frozen face embedder (trained on the training identities only)."""
    device = pick_device(cfg)
    vae = load_stage_vae(paths, device)
    ws = stage_windows(cfg, cfg.train.sft, paths, vae, progress=progress)
    embedder, hist = train_face_embedder(ws, ws.indices("train"), seed=cfg.seed,
                                         out_dir=paths.run_dir(STAGE) / "face_embedder", progress=progress)
    return vae, ws, embedder.to(device), hist


def run(cfg: Config, paths: StagePaths | None = None, *, steps: int | None = None, resume: bool = True,
        progress: bool = True) -> StageOutcome:
    paths = paths or StagePaths()
    vae, ws, embedder, _ = prepare(cfg, paths, progress)
    return train_sft(cfg, paths, ws, vae, embedder, losses=cfg.train.sft.losses, steps=steps, resume=resume,
                     progress=progress)


def run_ablations(cfg: Config, paths: StagePaths | None = None, *, steps: int | None = None, resume: bool = True,
                  progress: bool = True, variants: list[str] | None = None, workers: int | None = None
                  ) -> dict[str, StageOutcome]:
    """Train every ablation variant (the `full` one is the stage's model, under runs/sft/). With `workers` > 1 the
    variants train in that many processes of one thread each (2 cores: ~1.5x the throughput of one process with
    two threads on these small matrices); every variant is still a deterministic function of its config."""
    paths = paths or StagePaths()
    variants = variants if variants is not None else (cfg.train.sft.variants or None)
    workers = workers if workers is not None else cfg.train.sft.workers
    vae, ws, embedder, _ = prepare(cfg, paths, progress)  # builds the caches the workers then load
    motion_calibration(paths)  # once, before the workers read it
    todo = {n: w for n, w in ablation_variants(cfg.train.sft.losses).items() if variants is None or n in variants}
    if workers <= 1 or len(todo) <= 1:
        return {name: train_sft(cfg, paths, ws, vae, embedder, losses=losses, name=STAGE if name == "full" else name,
                                steps=steps, resume=resume, progress=progress) for name, losses in todo.items()}
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {name: pool.submit(_variant_worker, cfg, paths, name, losses, steps, resume)
                   for name, losses in todo.items()}
        return {name: f.result() for name, f in futures.items()}


def _variant_worker(cfg: Config, paths: StagePaths, name: str, losses: dict, steps, resume) -> StageOutcome:
    import torch

    torch.set_num_threads(1)
    vae, ws, embedder, _ = prepare(cfg, paths, progress=False)
    return train_sft(cfg, paths, ws, vae, embedder, losses=losses, name=STAGE if name == "full" else name,
                     steps=steps, resume=resume, progress=False)


def final_dir_of(paths: StagePaths, name: str) -> Path:
    return paths.final(STAGE) if name in ("full", STAGE) else paths.run_dir(STAGE) / "ablations" / name / "final"


def load_variant(paths: StagePaths, name: str, device="cpu"):
    from .generator import AvatarGenerator

    return AvatarGenerator.load(final_dir_of(paths, name), device).eval()


__all__ = ["ablation_variants", "load_variant", "prepare", "run", "run_ablations", "train_sft"]


def main(args) -> int:
    """`avatarv train --stage sft [--ablations --steps N --no-resume ...]`."""
    from ..config import load_config
    from .stage import paths_from_args, print_outcome

    cfg = load_config(args.profile)
    paths = paths_from_args(args)
    if getattr(args, "ablations", False):
        for out in run_ablations(cfg, paths, steps=args.steps, resume=not args.no_resume).values():
            print_outcome(out)
        return 0
    return print_outcome(run(cfg, paths, steps=args.steps, resume=not args.no_resume))
