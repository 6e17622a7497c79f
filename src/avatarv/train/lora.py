"""Per-person adaptation: a peft LoRA fine-tune of the SFT generator for one identity from its ~10 s reference
(`avatarv train --stage lora --identity idXXX`; seed: "From just ~10 seconds of ... you" / per-avatar quality).

The reference footage is that identity's clips of one scene (its lowest scene number, ~8–10 s at tiny). Training
samples pair two windows of that footage (reference window → target window); only the LoRA matrices on the DiT
blocks' attention and MLP projections train (rank `LORA_RANK`), everything else is frozen. Measured against the
base model on the same identity's OTHER scenes (footage the adapter never saw): held-out flow loss and, when the
evaluation face embedder exists (runs/sft/face_embedder_eval from the SFT proof), identity similarity of generations.
The adapter is saved with peft under runs/lora/<identity>/adapter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..config import Config
from ..data.datasets import PairBatches
from ..errors import InputError
from .loop import loss_drop, make_accelerator, train_loop
from .sft import sft_spec
from .stage import StageOutcome, StagePaths, init_generator, load_stage_vae, pick_device, stage_windows, validation_loss

STAGE = "lora"
LORA_RANK = 8
TARGETS = r".*blocks\.\d+\.(to_qkv|attn_out|ffn\.0|ffn\.2)$"


def identity_pairs(ws, identity: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(reference-footage pairs for training, pairs reference → other-scene targets for evaluation, ref scene)."""
    meta = ws.meta[ws.meta["identity"] == identity]
    if meta.empty:
        raise InputError(identity, "identity not in the training window cache (unknown or all clips rejected)")
    ref_scene = int(meta["scene"].min())
    ref_clips = sorted(meta.loc[meta["scene"] == ref_scene, "clip_id"].unique())
    other = sorted(meta.loc[meta["scene"] != ref_scene, "clip_id"].unique())
    if not other:
        raise InputError(identity, "needs footage from a second scene to measure the adapter")
    train = pd.DataFrame([(a, b) for a in ref_clips for b in ref_clips], columns=["ref_clip_id", "target_clip_id"])
    if len(ref_clips) == 1:  # one clip: its windows reference each other (PairBatches pairs window j with j)
        train = pd.DataFrame({"ref_clip_id": ref_clips, "target_clip_id": ref_clips})
    evaluation = pd.DataFrame([(ref_clips[0], b) for b in other], columns=["ref_clip_id", "target_clip_id"])
    return train, evaluation, ref_scene


def add_lora(model, rank: int = LORA_RANK):
    """Inject LoRA adapters (peft) into the generator's transformer blocks in place; freeze everything else."""
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS, lora_dropout=0.0, init_lora_weights=True)
    model.transformer = inject_adapter_in_model(cfg, model.transformer)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def run(cfg: Config, paths: StagePaths | None = None, *, identity: str, steps: int | None = None, resume: bool = True,
        progress: bool = True) -> StageOutcome:
    paths = paths or StagePaths()
    st = cfg.train.lora
    total = int(steps if steps is not None else st.steps)
    device = pick_device(cfg)
    vae = load_stage_vae(paths, device)
    td = vae.config.temporal_downsample
    ws = stage_windows(cfg, cfg.train.sft, paths, vae, progress=progress)
    train_pairs, eval_pairs, ref_scene = identity_pairs(ws, identity)
    split = ws.meta.loc[ws.meta["identity"] == identity, "split"].iloc[0]
    source = PairBatches(ws, train_pairs, st.batch_size, seed=cfg.seed + 3, splits=(split,), td=td)
    evaluation = PairBatches(ws, eval_pairs, 1, seed=0, splits=(split,), td=td).items
    spec = sft_spec(cfg, {**cfg.train.sft.losses, "identity": 0.0})  # flow + face/lip/motion; no decode in LoRA

    base = init_generator(cfg, vae.config, paths.final("sft")).to(device)
    val_base = validation_loss(base, ws, None, spec, seed=cfg.seed, pair_items=evaluation, td=td)
    model = add_lora(init_generator(cfg, vae.config, paths.final("sft")).to(device))
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def loss_fn(m, batch, gen, step):
        from .objectives import flow_loss

        return flow_loss(m, batch, gen, spec, td=td)

    run_dir = paths.run_dir(STAGE) / identity
    res = train_loop(model, loss_fn, source, st, run_dir, seed=cfg.seed + 3, total_steps=total, resume=resume,
                     accelerator=make_accelerator(st.mixed_precision, str(device)), use_muon=False, use_ema=False,
                     progress=progress)
    tuned = res.model.eval()
    val_lora = validation_loss(tuned, ws, None, spec, seed=cfg.seed, pair_items=evaluation, td=td)
    from peft import get_peft_model_state_dict

    adapter_dir = run_dir / "adapter"
    adapter_dir.mkdir(parents=True, exist_ok=True)
    torch.save(get_peft_model_state_dict(tuned.transformer), adapter_dir / "adapter_model.pt")
    metrics = {
        "identity": identity, "split": split, "reference_scene": ref_scene,
        "reference_seconds": float(len(source.items) and ws.meta.loc[np.unique(source.items[:, 1])].shape[0]
                                   * ws.frames.shape[1] / 25.0),
        "steps": total, "lora_rank": LORA_RANK, "trainable_params": n_train,
        "val_flow_other_scenes_base": val_base, "val_flow_other_scenes_lora": val_lora,
        "lora_gain": 1 - val_lora / val_base, **loss_drop(res.state.history),
    }
    metrics.update(_identity_similarity(paths, vae, ws, evaluation, base, tuned, spec.conditions, cfg.seed))
    return StageOutcome(f"{STAGE}/{identity}", run_dir, adapter_dir, res.state.history, metrics)


def _identity_similarity(paths, vae, ws, items, base, tuned, conditions, seed) -> dict:
    judge_dir = paths.run_dir("sft") / "face_embedder_eval"
    if not (judge_dir / "config.json").exists():
        return {}
    from ..diffusion.guidance import Guidance
    from ..models.face_embedder import FaceEmbedder
    from .identity import embed_frames
    from .proof import generate_for_pairs

    judge = FaceEmbedder.from_pretrained(str(judge_dir)).eval()
    out = {}
    for name, m in (("base", base), ("lora", tuned)):
        frames = generate_for_pairs(m, vae, ws, items, conditions=conditions, steps=8, seed=seed,
                                   guidance=Guidance(audio=2.0))
        sims = [float(embed_frames(judge, f, ws.face_box[int(t)]) @ embed_frames(judge, ws.frames[int(r)], ws.face_box[int(r)]))
                for f, (r, t) in zip(frames, items)]
        out[f"id_same_{name}"] = float(np.mean(sims))
    return out


def main(args) -> int:
    """`avatarv train --stage lora --identity idXXX [--steps N --no-resume ...]`."""
    from ..config import load_config
    from ..errors import ConfigError
    from .stage import paths_from_args, print_outcome

    if not getattr(args, "identity", None):
        raise ConfigError("avatarv train --stage lora needs --identity idXXX")
    cfg = load_config(args.profile)
    return print_outcome(run(cfg, paths_from_args(args), identity=args.identity, steps=args.steps,
                             resume=not args.no_resume))
