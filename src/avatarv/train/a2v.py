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
from ..data.datasets import WindowBatches
from .generator import AvatarGenerator
from .loop import loss_drop, make_accelerator, train_loop
from .objectives import FlowSpec, flow_loss
from .stage import StageOutcome, StagePaths, init_generator, load_stage_vae, pick_device, stage_windows, validation_loss

STAGE = "a2v"


class ShuffledAudio:
    """A WindowSet view whose log-mel rows are rolled by one window of another clip (wrong speech, same face)."""

    def __init__(self, ws, indices):
        self.ws = ws
        idx = np.asarray(indices)
        self.mel = ws.mel.clone()
        self.mel[torch.tensor(idx)] = ws.mel[torch.tensor(np.roll(idx, max(1, len(idx) // 2)))]

    def __getattr__(self, name):
        return getattr(self.ws, name)


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
    spec = FlowSpec(audio=True, n_bridge=1, cond_dropout=st.cond_dropout, timestep_shift=st.timestep_shift,
                    losses={k: float(st.losses.get(k, 0.0)) for k in ("lip", "audio_mouth")})

    model = init_generator(cfg, vae.config.latent_channels, paths.final("t2v"))
    # stage 2 adds the audio path: the audio encoder starts fresh here (stage 1 never used it)
    torch.manual_seed(cfg.seed + 1)
    model.audio_encoder = AvatarGenerator.from_config(cfg, vae.config.latent_channels).audio_encoder
    model = model.to(device)
    before = validation_loss(model, ws, val_idx, spec, seed=cfg.seed, latent_frames=lf, td=td)

    def loss_fn(m, batch, gen, step):
        return flow_loss(m, batch, gen, spec, td=td)

    res = train_loop(model, loss_fn, source, st, paths.run_dir(STAGE), seed=cfg.seed + 1, total_steps=total,
                     resume=resume, accelerator=accelerator or make_accelerator(st.mixed_precision, str(device)),
                     progress=progress)
    final = res.ema_model or res.model
    matched = validation_loss(final, ws, val_idx, spec, seed=cfg.seed, latent_frames=lf, td=td)
    shuffled = validation_loss(final, ShuffledAudio(ws, val_idx), val_idx, spec, seed=cfg.seed, latent_frames=lf,
                               td=td)
    final.save(paths.final(STAGE))
    metrics = {
        "steps": total, "val_flow_before": before, "val_flow_matched_audio": matched,
        "val_flow_shuffled_audio": shuffled, "audio_gain": shuffled - matched,
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
