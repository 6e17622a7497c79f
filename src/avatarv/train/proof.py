"""Proof that personality SFT learned what the seed claims, on held-out identities and cross-scene pairs:
lip sync beyond a "static reference frame + audio" baseline, motion style closer to the reference than the
"generic motion" ablation (no motion stream), identity closer to the reference than to other identities.

Every method generates the same held-out targets from the same reference windows, audio and noise seed; the
metrics are the interim probes of train/probes.py (motion probe → lip-sync correlation and window motion-style
similarity) and an identity embedder trained with another seed than the one inside the identity loss (so the
identity ablation is not graded by its own judge). The table also carries the ground-truth target clip as the
ceiling of each metric.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.datasets import WindowSet, pair_batch
from ..diffusion.guidance import Guidance
from ..inference.conditions import ConditionSpec, from_reference, prior_mean
from ..inference.motion_planner import MotionPlanner
from ..inference.pipeline import decode_frames
from .identity import embed_frames, train_face_embedder
from .probes import lip_sync_corr, style_similarity, train_motion_probe
from .sampling import sample_latents, sampler


@torch.no_grad()
def generate_for_pairs(model, vae, ws: WindowSet, items: np.ndarray, *, conditions: ConditionSpec, steps: int, seed: int,
                       guidance: Guidance, batch_size: int = 8) -> torch.Tensor:
    """(N, T, H, W, 3) uint8 frames of each target window, generated from its cross-scene reference + audio through
    the pipeline's sampler, conditioned as at inference: the reference's first frame, the reference clip's motion
    history, and a head-motion plan drawn from that history (its ground truth stands in for the measured track)."""
    pipe = sampler(model, vae, conditions)
    dev = pipe.transformer.device
    out = []
    for i in range(0, len(items), batch_size):
        sel = items[i : i + batch_size]
        b, window = pair_window(pipe, ws, sel, conditions, seed + i)
        gen = torch.Generator(device=dev).manual_seed(seed + i)
        lat, _ = sample_latents(pipe, tuple(b["latents"].shape), window, generator=gen, steps=steps,
                                mel=b["mel"].to(dev).float(), guidance=guidance)
        out.append(decode_frames(vae, lat)[:, : b["frames"].shape[1]])
    return torch.cat(out)


def pair_window(pipe, ws: WindowSet, sel: np.ndarray, conditions: ConditionSpec, plan_seed: int):
    """(pair batch, window conditions) of (reference window, target window) rows `sel`, conditioned as at inference:
    the reference's first frame, the reference clip's motion history, and a head-motion plan drawn (from
    `plan_seed`) from that history, its ground truth standing in for the measured track."""
    tr, planner = pipe.transformer, MotionPlanner()
    dev, td = tr.device, tr.config.temporal_downsample
    b = pair_batch(ws, sel[:, 0], sel[:, 1], td=td, context_frames=conditions.motion_context_frames)
    shape = tuple(b["latents"].shape)
    history = b.get("ref_motion_context")
    window = from_reference(tr, conditions, b["ref_latents"].to(dev).float(), b["ref_motion"].to(dev).float(),
                            None if history is None else history.to(dev).float())
    if history is not None and conditions.motion_shift:
        plan_gen = torch.Generator().manual_seed(plan_seed)
        shift = torch.cat([planner.latent_shift(planner.track_from_motion(h, shape[-1]), b["motion"].shape[1], td,
                                                shape[2], plan_gen) for h in history.float()])
        window.prior_mean = prior_mean(tr, conditions, window.cond_frame, shift)
    return b, window


def static_reference(ws: WindowSet, items: np.ndarray) -> torch.Tensor:
    """The baseline: the reference's first frame held still for the whole target window."""
    T = ws.frames.shape[1]
    return ws.frames[torch.as_tensor(items[:, 0])][:, :1].expand(-1, T, -1, -1, -1).clone()


@torch.no_grad()
def score(frames: torch.Tensor, ws: WindowSet, items: np.ndarray, probe, id_embedder) -> dict[str, float]:
    ref_idx, tgt_idx = torch.as_tensor(items[:, 0]), torch.as_tensor(items[:, 1])
    lip, style, same, other = [], [], [], []
    ref_emb = torch.stack([embed_frames(id_embedder, ws.frames[r], ws.face_box[r]) for r in ref_idx])
    ref_ident = ws.identity[ref_idx]
    for j in range(len(items)):
        t = int(tgt_idx[j])
        lip.append(lip_sync_corr(probe, frames[j], ws.motion[t]))
        style.append(style_similarity(probe, frames[j], ws.frames[int(ref_idx[j])]))
        e = embed_frames(id_embedder, frames[j], ws.face_box[t])
        cos = ref_emb @ e
        same.append(float(cos[j]))
        others = cos[ref_ident != ref_ident[j]]
        other.append(float(others.mean()) if len(others) else float("nan"))
    margin = np.array(same) - np.array(other)
    has_other = ~np.isnan(margin)
    return {"lip_sync": float(np.mean(lip)), "motion_style": float(np.mean(style)), "id_same": float(np.mean(same)),
            "id_other": float(np.mean(np.array(other)[has_other])) if has_other.any() else float("nan"),
            "id_margin": float(np.mean(margin[has_other])) if has_other.any() else float("nan")}


def build_judges(ws: WindowSet, *, seed: int, out_dir: Path | None, progress: bool = True):
    """Motion probe + evaluation face embedder, both trained on the training identities only."""
    probe = train_motion_probe(ws, ws.indices("train"), seed=seed + 11, progress=progress)
    judge, _ = train_face_embedder(ws, ws.indices("train"), seed=seed + 13,
                                   out_dir=None if out_dir is None else out_dir / "face_embedder_eval",
                                   progress=progress)
    return probe, judge


def proof_table(models: dict[str, tuple[torch.nn.Module, ConditionSpec]], vae, ws: WindowSet, items: np.ndarray, *,
                seed: int, steps: int, probe, judge, guidance: Guidance) -> tuple[pd.DataFrame, dict]:
    """Rows: every model (name → (generator, the conditions it was trained with)), the static-reference baseline and
    the ground truth. Returns the table and the generated frames per row (for grids)."""
    rows, frames = [], {}
    for name, (model, conditions) in models.items():
        f = generate_for_pairs(model, vae, ws, items, conditions=conditions, steps=steps, seed=seed, guidance=guidance)
        frames[name] = f
        rows.append({"method": name, **score(f, ws, items, probe, judge)})
    frames["static_reference"] = static_reference(ws, items)
    rows.append({"method": "static_reference", **score(frames["static_reference"], ws, items, probe, judge)})
    frames["ground_truth"] = ws.frames[torch.as_tensor(items[:, 1])]
    rows.append({"method": "ground_truth", **score(frames["ground_truth"], ws, items, probe, judge)})
    return pd.DataFrame(rows), frames


def holdout_items(ws: WindowSet, pairs: pd.DataFrame, n: int) -> np.ndarray:
    """Up to n (ref window, target window) pairs of held-out identities, spread over identities."""
    from ..data.datasets import PairBatches

    items = PairBatches(ws, pairs, 1, seed=0, splits=("holdout",)).items
    ident = ws.identity[torch.as_tensor(items[:, 1])].numpy()
    order = np.argsort(np.array([np.sum(ident[:i] == ident[i]) for i in range(len(ident))]), kind="stable")
    return items[order[:n]]


def frame_grid(ref: torch.Tensor, gen: torch.Tensor, gt: torch.Tensor, frames_shown=(0, 4, 8)) -> np.ndarray:
    """Rows of [reference | generated frames | ground-truth frames] as one uint8 image."""
    rows = []
    for r, g, t in zip(ref, gen, gt):
        cells = [r[0]] + [g[min(i, len(g) - 1)] for i in frames_shown] + [t[min(i, len(t) - 1)] for i in frames_shown]
        rows.append(np.concatenate([c.numpy() for c in cells], axis=1))
    return np.concatenate(rows, axis=0)


def run_proof(cfg, paths, outcomes: dict, vae, ws: WindowSet, *, progress: bool = True):
    """Score every trained SFT variant (+ baselines) on held-out cross-scene pairs.

    Returns (table with one row per method incl. held-out flow loss, generated frames per method, the pairs,
    the three pass/fail checks of issue 7)."""
    from ..data.datasets import load_pairs
    from ..inference.pipeline import saved_conditions
    from .sft import final_dir_of, load_variant

    dev = next(vae.parameters()).device
    probe, judge = build_judges(ws, seed=cfg.seed, out_dir=paths.run_dir("sft"), progress=progress)
    items = holdout_items(ws, load_pairs(paths.curated, ws), cfg.train.sft.eval_pairs)
    models = {name: (load_variant(paths, name, dev), saved_conditions(final_dir_of(paths, name))) for name in outcomes}
    guidance = Guidance(audio=cfg.sampling.cfg_audio, reference=cfg.sampling.cfg_reference)
    table, frames = proof_table(models, vae, ws, items, seed=cfg.seed, steps=cfg.sampling.steps, probe=probe, judge=judge,
                                guidance=guidance)
    flow = {name: o.metrics["val_flow_holdout_pairs"] for name, o in outcomes.items()}
    table["val_flow"] = [flow.get(m, float("nan")) for m in table["method"]]
    row = table.set_index("method")
    checks = {}
    # the interim lip probe must first pass its own known answer (real target > still frame); on the tiny corpus it
    # has failed it (ground truth -0.20), so lip sync is then left to stage 10's validated sync expert
    # (reports/curriculum_checks.md) instead of being claimed from an invalid probe
    checks["lip_probe_valid"] = bool(row.at["ground_truth", "lip_sync"] > row.at["static_reference", "lip_sync"])
    if "full" in row.index:
        if checks["lip_probe_valid"]:
            checks["lip_sync_beats_static_reference"] = bool(row.at["full", "lip_sync"] > row.at["static_reference", "lip_sync"])
        checks["identity_same_above_other"] = bool(row.at["full", "id_same"] > row.at["full", "id_other"])
        if "no_motion" in row.index:
            checks["motion_style_beats_generic_motion"] = bool(row.at["full", "motion_style"] > row.at["no_motion", "motion_style"])
    return table, frames, items, checks
