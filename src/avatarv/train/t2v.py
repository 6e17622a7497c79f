"""Stage 1, text-to-video pre-training (seed: "Stage 1 ... progressive scaling: start with tiny, short videos,
gradually increase resolution and duration"; "Muon for most parameters, AdamW for embeddings").

Captions come from the corpus metadata (datasets.caption_for). The curriculum is `train.t2v.phases`: at tiny,
32-px images → 5-frame clips at 64 px → 9-frame clips at 64 px, each phase a share of the steps. All phases read
the same latent cache (causal VAE: image and short-clip latents are prefixes of the window latents; the 32-px
image latents are encoded once next to them). The phase of a step is a function of the step, so a resumed run
picks up in the right phase. No audio, no reference, no motion stream yet.
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..data.datasets import WindowBatches
from ..inference.conditions import ConditionSpec
from .loop import loss_drop, make_accelerator, train_loop
from .objectives import FlowSpec, flow_loss
from .stage import StageOutcome, StagePaths, init_generator, load_stage_vae, pick_device, stage_windows, validation_loss
from .text import TextBank

STAGE = "t2v"
# how this stage feeds the transformer; saved with its pipeline, so sampling feeds it the same way
CONDITIONS = ConditionSpec(text=True, audio=False, reference=False, motion=False, start_frame=False)


class PhasedBatches:
    """Switches the batch source by optimizer step: phase i covers steps [ends[i-1], ends[i])."""

    def __init__(self, sources: list[WindowBatches], ends: list[int], grad_accum: int):
        self.sources, self.ends, self.k = sources, ends, max(1, grad_accum)

    def phase_of(self, step: int) -> int:
        return next((i for i, e in enumerate(self.ends) if step < e), len(self.ends) - 1)

    def batch(self, index: int, rank: int, world: int):
        return self.sources[self.phase_of(index // self.k)].batch(index, rank, world)


def phase_plan(phases: list[dict], total: int, default_frames: int, default_size: int) -> list[tuple[int, int, int]]:
    """[(frames, size, end_step)] with end steps from the phases' `frac` shares (the last ends at `total`)."""
    if not phases:
        return [(default_frames, default_size, total)]
    fr = np.array([float(p.get("frac", 1.0)) for p in phases])
    ends = np.round(np.cumsum(fr / fr.sum()) * total).astype(int)
    ends[-1] = total
    return [(int(p["frames"]), int(p.get("size", default_size)), int(e)) for p, e in zip(phases, ends)]


def run(cfg: Config, paths: StagePaths | None = None, *, steps: int | None = None, resume: bool = True,
        progress: bool = True, accelerator=None, text_encode=None) -> StageOutcome:
    paths = paths or StagePaths()
    st = cfg.train.t2v
    total = int(steps if steps is not None else st.steps)
    device = pick_device(cfg)
    vae = load_stage_vae(paths, device)
    td = vae.config.temporal_downsample
    plan = phase_plan(st.phases, total, st.frames, st.size)
    image_sizes = sorted({s for f, s, _ in plan if s != st.size and f == 1})
    ws = stage_windows(cfg, st, paths, vae, image_sizes=image_sizes, progress=progress)
    train_idx, val_idx = ws.indices("train"), ws.indices("holdout")
    text = TextBank(list(ws.meta["caption"]), text_encode).to(device)

    sources = []
    for frames, size, _ in plan:
        lf = 1 + (frames - 1) // td
        sources.append(WindowBatches(ws, train_idx, st.batch_size, seed=cfg.seed, latent_frames=lf,
                                     image_size=size if size != st.size else None, td=td))
    source = PhasedBatches(sources, [e for _, _, e in plan], st.grad_accum)
    spec = FlowSpec(CONDITIONS, cond_dropout=st.cond_dropout, timestep_shift=st.timestep_shift)

    model = init_generator(cfg, vae.config, None).to(device)
    lf_full = 1 + (st.frames - 1) // td
    val_before = validation_loss(model, ws, val_idx, spec, seed=cfg.seed, latent_frames=lf_full, text_lookup=text,
                                 td=td)

    def loss_fn(m, batch, gen, step):
        return flow_loss(m, batch, gen, spec, text_lookup=text, td=td)

    res = train_loop(model, loss_fn, source, st, paths.run_dir(STAGE), seed=cfg.seed, total_steps=total,
                     resume=resume, accelerator=accelerator or make_accelerator(st.mixed_precision, str(device)),
                     progress=progress)
    final = res.ema_model or res.model
    val_after = validation_loss(final, ws, val_idx, spec, seed=cfg.seed, latent_frames=lf_full, text_lookup=text, td=td)
    final.save(paths.final(STAGE), vae, cfg, CONDITIONS)
    phase_loss = []
    for i, (_, _, end) in enumerate(plan):  # per-phase mean loss, for the curriculum plot
        seg = [h["loss"] for h in res.state.history[(plan[i - 1][2] if i else 0) : end]]
        phase_loss.append(float(np.mean(seg)) if seg else float("nan"))
    metrics = {
        "steps": total, "val_flow_before": val_before, "val_flow_after": val_after,
        "val_improvement": 1 - val_after / val_before, **loss_drop(res.state.history),
        "phases": [{"frames": f, "size": s, "end_step": e, "mean_loss": pl} for (f, s, e), pl in zip(plan, phase_loss)],
        "train_windows": len(train_idx), "holdout_windows": len(val_idx), "resumed_from": res.resumed_from,
    }
    return StageOutcome(STAGE, res.run_dir, paths.final(STAGE), res.state.history, metrics)


def main(args) -> int:
    """`avatarv train --stage STAGE [--steps N --no-resume --corpus --curated --runs]`."""
    from ..config import load_config
    from .stage import paths_from_args, print_outcome

    cfg = load_config(args.profile)
    return print_outcome(run(cfg, paths_from_args(args), steps=args.steps, resume=not args.no_resume))
