"""Stage 2, audio-to-video pre-training (seed: "Given a face image + audio track, generate a video where the person
speaks those words. This stage adds the audio cross-attention modules").

Starts from the stage-1 generator. Each talking window is generated from its first latent frame (the face image,
kept clean as a bridge frame) and its log-mel (audio encoder → per-frame features → windowed audio cross-attention
in every block); audio is dropped per sample for classifier-free guidance. The proof that the model now follows
speech: on held-out identities its flow loss with the window's own audio is lower than with another window's
audio (`val_flow_matched_audio` < `val_flow_shuffled_audio`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import Config
from ..data.datasets import WindowBatches, window_batch
from ..inference.conditions import ConditionSpec
from .generator import AvatarGenerator
from .loop import loss_drop, make_accelerator, train_loop
from .objectives import FlowSpec, SyncLoss, flow_loss
from .stage import (
    SYNC_GRADER_SEED_OFFSET,
    StageOutcome,
    StagePaths,
    init_generator,
    load_stage_vae,
    load_sync_judge,
    pick_device,
    stage_windows,
    validation_loss,
)

STAGE = "a2v"
# how this stage feeds the transformer; saved with its pipeline, so sampling feeds it the same way
CONDITIONS = ConditionSpec(audio=True, reference=False, motion=False, first_frame_bridge=True, start_frame=True)


class ShuffledAudio:
    """A WindowSet view whose log-mel rows are rolled by one window of another clip (wrong speech, same face)."""

    def __init__(self, ws, indices):
        self.ws = ws
        idx = np.asarray(indices)
        self.mel = ws.mel.clone()
        self.mel[torch.tensor(idx)] = ws.mel[torch.tensor(np.roll(idx, max(1, len(idx) // 2)))]

    def __getattr__(self, name):
        return getattr(self.ws, name)


@torch.no_grad()
def sync_follow_probe(model, vae, ws, indices, grader, *, steps: int, seed: int, guidance_audio: float = 2.0,
                      n: int = 24, batch_size: int = 8) -> dict[str, float]:
    """Does the model follow speech? Held-out windows generated from their first frame + audio (as trained), scored
    by a sync expert that did not teach the model: its 1 − cos with the window's own audio must be lower than with
    another window's audio, as it is for the real clips (`gt_*`, the ceiling)."""
    from ..diffusion.guidance import Guidance
    from ..inference.conditions import WindowConditions
    from .sampling import sample_latents, sampler

    pipe = sampler(model, vae, CONDITIONS)
    grade = SyncLoss(vae, grader)
    idx = np.asarray(indices)[:: max(1, len(indices) // n)][:n]
    dev = next(model.parameters()).device
    sums = {"gen_matched": 0.0, "gen_shuffled": 0.0, "gt_matched": 0.0, "gt_shuffled": 0.0}
    for i in range(0, len(idx), batch_size):
        b = window_batch(ws, idx[i : i + batch_size])
        b = {k: v.to(dev) if torch.is_tensor(v) and k != "frames" else v for k, v in b.items()}
        x0 = b["latents"].float()
        lat, _ = sample_latents(pipe, tuple(x0.shape), WindowConditions(cond_frame=x0[:, :, 0]),
                                generator=torch.Generator(device=dev).manual_seed(seed + i), steps=steps,
                                mel=b["mel"].float(), bridge=x0[:, :, :1], guidance=Guidance(audio=guidance_audio))
        other = {**b, "mel": b["mel"].roll(max(1, len(x0) // 2), 0)}
        zero = torch.zeros(len(x0), device=dev)
        w = len(x0) / len(idx)
        sums["gen_matched"] += w * float(grade(lat, zero, b))
        sums["gen_shuffled"] += w * float(grade(lat, zero, other))
        sums["gt_matched"] += w * float(grade(x0, zero, b))
        sums["gt_shuffled"] += w * float(grade(x0, zero, other))
    sums["gen_sync_gap"] = sums["gen_shuffled"] - sums["gen_matched"]
    sums["gt_sync_gap"] = sums["gt_shuffled"] - sums["gt_matched"]
    return sums


def run(cfg: Config, paths: StagePaths | None = None, *, steps: int | None = None, resume: bool = True,
        progress: bool = True, accelerator=None) -> StageOutcome:
    paths = paths or StagePaths()
    st = cfg.train.a2v
    total = int(steps if steps is not None else st.steps)
    device = pick_device(cfg)
    vae = load_stage_vae(paths, device)
    td = vae.config.temporal_downsample
    ws = stage_windows(cfg, st, paths, vae, progress=progress)
    train_idx, val_idx = ws.indices("train"), ws.indices("holdout")
    lf = 1 + (st.frames - 1) // td
    source = WindowBatches(ws, train_idx, st.batch_size, seed=cfg.seed + 1, latent_frames=lf, td=td)
    # the mouth is a few latent cells of a 64-px face: without extra weight there the audio barely moves the loss
    spec = FlowSpec(CONDITIONS, cond_dropout=st.cond_dropout, timestep_shift=st.timestep_shift,
                    losses={k: float(st.losses.get(k, 0.0)) for k in ("lip", "audio_mouth", "sync")})
    sync = None
    if spec.losses["sync"] > 0:
        vae.requires_grad_(False)
        sync = SyncLoss(vae, load_sync_judge(cfg, paths, progress=progress, device=device))

    model = init_generator(cfg, vae.config, paths.final("t2v"))
    # stage 2 adds the audio path: the audio encoder starts fresh here (stage 1 never used it)
    torch.manual_seed(cfg.seed + 1)
    model.audio_encoder = AvatarGenerator.from_config(cfg, vae.config.latent_channels).audio_encoder
    model = model.to(device)
    before = validation_loss(model, ws, val_idx, spec, seed=cfg.seed, latent_frames=lf, td=td)

    def loss_fn(m, batch, gen, step):
        return flow_loss(m, batch, gen, spec, td=td, sync=sync)

    res = train_loop(model, loss_fn, source, st, paths.run_dir(STAGE), seed=cfg.seed + 1, total_steps=total,
                     resume=resume, accelerator=accelerator or make_accelerator(st.mixed_precision, str(device)),
                     progress=progress)
    final = res.ema_model or res.model
    matched = validation_loss(final, ws, val_idx, spec, seed=cfg.seed, latent_frames=lf, td=td)
    shuffled = validation_loss(final, ShuffledAudio(ws, val_idx), val_idx, spec, seed=cfg.seed, latent_frames=lf,
                               td=td)
    final.save(paths.final(STAGE), vae, cfg, CONDITIONS)
    grader = load_sync_judge(cfg, paths, progress=progress, name="sync_grader", seed_offset=SYNC_GRADER_SEED_OFFSET,
                             device=device)
    probe = sync_follow_probe(final.eval(), vae, ws, val_idx, grader, steps=cfg.sampling.steps, seed=cfg.seed,
                              guidance_audio=cfg.sampling.cfg_audio)
    metrics = {
        "steps": total, "val_flow_before": before, "val_flow_matched_audio": matched,
        "val_flow_shuffled_audio": shuffled, "audio_gain": shuffled - matched,
        **{f"sync_{k}": v for k, v in probe.items()},
        "val_improvement": 1 - matched / before, **loss_drop(res.state.history),
        "train_windows": len(train_idx), "holdout_windows": len(val_idx), "resumed_from": res.resumed_from,
    }
    return StageOutcome(STAGE, res.run_dir, paths.final(STAGE), res.state.history, metrics)


def main(args) -> int:
    """`avatarv train --stage STAGE [--steps N --no-resume --corpus --curated --runs]`."""
    from ..config import load_config
    from .stage import paths_from_args, print_outcome

    cfg = load_config(args.profile)
    return print_outcome(run(cfg, paths_from_args(args), steps=args.steps, resume=not args.no_resume))
