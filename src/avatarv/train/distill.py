"""Stage 4, distillation (seed: "CFG distillation ... Distribution Matching Distillation"): a few-step student.

The teacher is stage 3's pipeline (runs/sft/final): 12 Euler steps × 3 guidance branches (no reference / reference /
reference + audio) = 36 transformer passes per chunk. Two phases make it a 2-step, one-pass student:

1. CFG distillation: the student takes the guidance weights (audio, reference) as an input (models/dit.py
   `guidance_embed`, zero-initialised so it starts as the teacher) and regresses, in one pass, the teacher's guided
   velocity at weights drawn per sample. Saved as runs/distill/ablations/cfg/final (the teacher's step count).
2. DMD (Yin et al. 2024, DMD2's two time-scale rule, no GAN at this scale): three models: the student G (few
   steps), a fake score model initialised from the teacher that is fitted, by flow matching, to G's own samples,
   and the frozen teacher as the real score (guided). For a student sample x0 noised to t', the KL's gradient
   pushes x0 along x0_fake(x_t') − x0_real(x_t') (`dmd_gradient`); `fake_updates` fake steps per student step. A
   regression warm start onto teacher ODE pairs (noise → the teacher's guided sample from it) comes first and is kept
   as a small term beside DMD. The student trains on its own few-step schedule ("backward simulation": a random
   step's input is produced by the student itself). Saved as runs/distill/final with `student_steps` as its
   pipeline's step count, so `avatarv generate --checkpoint runs/distill/final` is the fast model.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config, StageTrainConfig
from ..data.datasets import PairBatches, WindowSet, load_pairs, pair_batch
from ..diffusion.flow import add_noise, predicted_x0, sample_timesteps
from ..diffusion.guidance import Guidance, guided_velocity
from ..diffusion.scheduler import make_scheduler
from ..errors import InputError
from ..inference.conditions import ConditionSpec, teacher_forced
from ..models.latent_time import pool_to_latent_rate
from .generator import AvatarGenerator, unwrap
from .loop import (
    TrainState,
    list_checkpoints,
    loss_drop,
    make_accelerator,
    save_checkpoint,
    step_seed,
    train_loop,
    write_history,
)
from .objectives import condition_kwargs
from .stage import StageOutcome, StagePaths, load_stage_vae, pick_device, stage_windows

STAGE = "distill"


# ------------------------------------------------------------------------------------------------ the teacher
def load_teacher(path: Path, device: torch.device | str = "cpu") -> tuple[AvatarGenerator, ConditionSpec]:
    """Stage 3's saved pipeline as a frozen generator and the conditions it was trained with; a missing or
    incompatible checkpoint is one line naming the path and what is missing."""
    from ..inference.pipeline import is_saved_pipeline, saved_conditions

    path = Path(path)
    if not is_saved_pipeline(path):
        raise InputError(path, "no teacher pipeline (model_index.json missing): run stage 05_personality_sft first")
    for part in ("transformer", "audio_encoder"):
        if not (path / part / "config.json").exists():
            raise InputError(path, f"teacher pipeline has no {part}/")
    conditions = saved_conditions(path)
    if not (conditions.audio and conditions.reference):
        raise InputError(path, "teacher was not trained with audio and reference conditions (not a stage-3 model)")
    teacher = AvatarGenerator.load(path, device).eval()
    if teacher.transformer.config.guidance_embed:
        raise InputError(path, "teacher is already CFG-distilled (its transformer takes guidance as an input)")
    teacher.requires_grad_(False)
    return teacher, conditions


def joint_inputs(model, batch: dict[str, Any], conditions: ConditionSpec, td: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                              dict[str, Any]]:
    """(clean latents, clean motion tokens at latent rate, conditioning kwargs) of a pair batch."""
    x0 = batch["latents"].float()
    tr = unwrap(model).transformer
    m0 = tr.normalize_motion(pool_to_latent_rate(batch["motion"].float(), td)[:, : x0.shape[2]])
    return x0, m0, condition_kwargs(tr, conditions, batch, x0.shape[2], td)


def velocity(model, x_t, m_t, t, kw: dict[str, Any], **extra) -> tuple[torch.Tensor, torch.Tensor]:
    out = model(x_t, t, motion=m_t, **kw, **extra)
    return out.sample.float(), out.motion.float()


def teacher_velocity(teacher, x_t, m_t, t, kw: dict[str, Any], guidance: Guidance) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's guided velocity (diffusion/guidance.py; weights may be per-sample tensors). The audio features
    and the reference's K/V are computed once and shared by the guidance branches, which differ only in what they drop."""
    B = x_t.shape[0]
    off = torch.ones(B, dtype=torch.bool, device=x_t.device)
    g = unwrap(teacher)
    with torch.no_grad():
        call = {k: v for k, v in kw.items() if k not in ("mel", "ref_latents", "ref_motion", "ref_motion_context")}
        call["audio"] = g.audio_encoder(kw["mel"]) if kw.get("mel") is not None else None
        if kw.get("ref_latents") is not None:
            call["reference"] = g.transformer.encode_reference(kw["ref_latents"], kw.get("ref_motion"),
                                                               kw.get("ref_motion_context"))

        def predict(use_ref: bool, use_audio: bool):
            out = g.transformer(x_t, t, motion=m_t, drop_audio=None if use_audio else off,
                                drop_reference=None if use_ref else off, **call)
            return out.sample.float(), out.motion.float()

        return guided_velocity(predict, guidance)


# ------------------------------------------------------------------------------------------------ phase 1: CFG
def sample_guidance(batch: int, gen: torch.Generator, audio_range, reference_range, device) -> Guidance:
    """Per-sample guidance weights, uniform in the configured ranges."""
    u = torch.rand(batch, 2, generator=gen, device=gen.device).to(device)
    return Guidance(audio=audio_range[0] + u[:, 0] * (audio_range[1] - audio_range[0]),
                    reference=reference_range[0] + u[:, 1] * (reference_range[1] - reference_range[0]))


def cfg_distill_loss(student, teacher, batch: dict[str, Any], gen: torch.Generator, conditions: ConditionSpec, td: int,
                     audio_range=(1.0, 3.0), reference_range=(1.0, 2.0),
                     timestep_shift: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """One pass of the student at weights w ≈ the teacher's three-branch guided velocity at w."""
    x0, m0, kw = joint_inputs(student, batch, conditions, td)
    B, dev = x0.shape[0], x0.device
    t = sample_timesteps(B, gen, timestep_shift, dev)
    x_t = add_noise(x0, torch.randn(x0.shape, generator=gen, device=dev), t)
    m_t = add_noise(m0, torch.randn(m0.shape, generator=gen, device=dev), t)
    g = sample_guidance(B, gen, audio_range, reference_range, dev)
    v_teacher, vm_teacher = teacher_velocity(teacher, x_t, m_t, t, kw, g)
    v, vm = velocity(student, x_t, m_t, t, kw, guidance=g.as_tensor(B, dev))
    terms = {"cfg_video": F.mse_loss(v, v_teacher), "cfg_motion": F.mse_loss(vm, vm_teacher)}
    return terms["cfg_video"] + terms["cfg_motion"], {k: float(v.detach()) for k, v in terms.items()}


# ------------------------------------------------------------------------------------------------ phase 2: DMD
def dmd_gradient(x0_g: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """DMD's per-sample normalised KL gradient w.r.t. the student's sample: (x0_fake − x0_real) / mean|x0_g − x0_real|.

    Score difference s_fake − s_real at x_t is ∝ (x0_fake − x0_real)·(1−t)/t²; descending it moves the sample from
    where the student's own distribution puts it towards where the real one does."""
    dims = tuple(range(1, x0_g.dim()))
    scale = (x0_g - x0_real).abs().mean(dim=dims, keepdim=True).clamp_min(1e-6)
    return (x0_fake - x0_real) / scale


def dmd_loss(x0_g: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A surrogate whose gradient w.r.t. x0_g is grad / numel (DMD's `0.5·‖x − sg(x − grad)‖²`)."""
    return 0.5 * F.mse_loss(x0_g, (x0_g - grad).detach())


def student_times(steps: int, shift: float = 1.0) -> list[float]:
    """The student's sampling times t_0 = 1 > … > t_{K-1} > 0, exactly as its pipeline's scheduler visits them."""
    from ..inference.pipeline import AvatarVPipeline

    sch = make_scheduler(shift)
    sch.set_timesteps(sigmas=AvatarVPipeline.sigmas(steps))
    return [float(s) for s in sch.sigmas[:-1]]


def student_sample(student, noise, m_noise, kw, g: torch.Tensor, times: list[float], k: int):
    """Backward simulation: the student runs its first k steps without gradients (Euler, as its pipeline does), then
    predicts the clean sample from step k with gradients. Returns (x0, m0)."""
    B, dev = noise.shape[0], noise.device
    x, m = noise, m_noise
    with torch.no_grad():
        for j in range(k):
            t = torch.full((B,), times[j], device=dev)
            v, vm = velocity(student, x, m, t, kw, guidance=g)
            t_next = times[j + 1] if j + 1 < len(times) else 0.0
            x, m = x + (t_next - times[j]) * v, m + (t_next - times[j]) * vm
    t = torch.full((B,), times[k], device=dev)
    v, vm = velocity(student, x, m, t, kw, guidance=g)
    return predicted_x0(x, v, t), predicted_x0(m, vm, t)


@dataclass
class ODEPairs:
    """Teacher ODE pairs: noise → the teacher's guided sample from it, for the pairs at `items`."""

    items: np.ndarray  # (N, 2) reference window, target window
    noise: torch.Tensor
    m_noise: torch.Tensor
    clean: torch.Tensor
    m_clean: torch.Tensor

    def regression_batch(self, i: int, batch_size: int, ws: WindowSet, td: int, context: int, device) -> dict[str, Any]:
        """Step i's ODE pairs (cycled) with the pair batch they were integrated under."""
        start = (i * batch_size) % max(len(self.items) - batch_size + 1, 1)
        sl = slice(start, start + batch_size)
        items = self.items[sl]
        conds = pair_batch(ws, items[:, 0], items[:, 1], td=td, context_frames=context)
        return {"batch": _to(conds, device), "noise": self.noise[sl].to(device), "m_noise": self.m_noise[sl].to(device),
                "clean": self.clean[sl].to(device), "m_clean": self.m_clean[sl].to(device)}


@torch.no_grad()
def teacher_ode_pairs(teacher, vae, ws: WindowSet, items: np.ndarray, conditions: ConditionSpec, *, steps: int,
                      guidance: Guidance, seed: int, td: int, batch_size: int = 8) -> ODEPairs:
    """Integrate the teacher's guided ODE (the pipeline's sampler) from fixed noise on training pairs."""
    from .sampling import sampler

    pipe = sampler(teacher, vae, conditions)
    tr, dev = pipe.transformer, pipe.transformer.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = {k: [] for k in ("noise", "m_noise", "clean", "m_clean")}
    for i in range(0, len(items), batch_size):
        sel = items[i : i + batch_size]
        b = _to(pair_batch(ws, sel[:, 0], sel[:, 1], td=td, context_frames=conditions.motion_context_frames), dev)
        x0, m0, kw = joint_inputs(teacher, b, conditions, td)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        m_noise = torch.randn(m0.shape, generator=gen).to(dev)
        window = teacher_forced(tr, conditions, b, x0.shape[2], td)
        cache = tr.encode_reference(window.ref_latents, window.ref_motion, window.ref_context)
        lat, mot = pipe.sample_window(noise.clone(), m_noise.clone(), window, audio=teacher.audio_encoder(kw["mel"]),
                                      reference_cache=cache, steps=steps, guidance=guidance)
        for k, v in zip(out, (noise, m_noise, lat, mot)):
            out[k].append(v.float().cpu())
    return ODEPairs(items=np.asarray(items), **{k: torch.cat(v) for k, v in out.items()})


def _to(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


class DMDModels(torch.nn.Module):
    """Student and fake score model in one module, so accelerate prepares and checkpoints them together."""

    def __init__(self, student: AvatarGenerator, fake: AvatarGenerator):
        super().__init__()
        self.student, self.fake = student, fake


@dataclass
class DMDResult:
    student: AvatarGenerator
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None


def dmd_step(models: DMDModels, teacher, batch, regression: dict[str, Any] | None, gen: torch.Generator, *,
             conditions: ConditionSpec, guidance: Guidance, times: list[float], td: int, regression_weight: float,
             warm: bool, fake_updates: int, opt_student, opt_fake, accel) -> dict[str, float]:
    """One student update (regression only while `warm`, else DMD + regression) after `fake_updates` fake updates."""
    student, fake = models.student, models.fake
    x0, m0, kw = joint_inputs(student, batch, conditions, td)
    B, dev = x0.shape[0], x0.device
    g = guidance.as_tensor(B, dev)
    terms: dict[str, float] = {}
    if not warm:
        k = int(torch.randint(len(times), (1,), generator=gen, device=gen.device))
        noise = torch.randn(x0.shape, generator=gen, device=dev)
        m_noise = torch.randn(m0.shape, generator=gen, device=dev)
        x0_g, m0_g = student_sample(student, noise, m_noise, kw, g, times, k)
        # the fake score model follows the student's current distribution (flow matching on its samples)
        fake_loss = x0.new_zeros(())
        for _ in range(fake_updates):
            t = sample_timesteps(B, gen, 1.0, dev)
            n, mn = torch.randn(x0.shape, generator=gen, device=dev), torch.randn(m0.shape, generator=gen, device=dev)
            xs, ms = x0_g.detach(), m0_g.detach()
            v, vm = velocity(fake, add_noise(xs, n, t), add_noise(ms, mn, t), t, kw)
            fake_loss = F.mse_loss(v, n - xs) + F.mse_loss(vm, mn - ms)
            opt_fake.zero_grad(set_to_none=True)
            accel.backward(fake_loss)
            opt_fake.step()
        terms["fake_flow"] = float(fake_loss.detach())
        # the distribution-matching gradient at a random noise level
        t = 0.02 + 0.96 * torch.rand(B, generator=gen, device=gen.device).to(dev)
        n, mn = torch.randn(x0.shape, generator=gen, device=dev), torch.randn(m0.shape, generator=gen, device=dev)
        x_t, m_t = add_noise(x0_g.detach(), n, t), add_noise(m0_g.detach(), mn, t)
        v_real, vm_real = teacher_velocity(teacher, x_t, m_t, t, kw, guidance)
        with torch.no_grad():
            v_fake, vm_fake = velocity(fake, x_t, m_t, t, kw)
        grad = dmd_gradient(x0_g.detach(), predicted_x0(x_t, v_real, t), predicted_x0(x_t, v_fake, t))
        m_grad = dmd_gradient(m0_g.detach(), predicted_x0(m_t, vm_real, t), predicted_x0(m_t, vm_fake, t))
        loss = dmd_loss(x0_g, grad) + dmd_loss(m0_g, m_grad)
        terms["dmd"] = float(loss.detach())
        w_reg = regression_weight
    else:
        loss, w_reg = x0.new_zeros(()), 1.0
    if regression is not None and w_reg > 0:
        _, _, okw = joint_inputs(student, regression["batch"], conditions, td)
        noise = regression["noise"]
        xs, ms = student_sample_chain(student, noise, regression["m_noise"], okw, guidance.as_tensor(len(noise), dev),
                                      times)
        reg = F.mse_loss(xs, regression["clean"]) + F.mse_loss(ms, regression["m_clean"])
        terms["regression"] = float(reg.detach())
        loss = loss + w_reg * reg
    opt_student.zero_grad(set_to_none=True)
    accel.backward(loss)
    accel.clip_grad_norm_(student.parameters(), 1.0)
    opt_student.step()
    return terms


def student_sample_chain(student, noise, m_noise, kw, g, times: list[float]):
    """The student's whole few-step sample with gradients through every step (the regression target's path)."""
    B, dev = noise.shape[0], noise.device
    x, m = noise, m_noise
    for j, tj in enumerate(times):
        t = torch.full((B,), tj, device=dev)
        v, vm = velocity(student, x, m, t, kw, guidance=g)
        t_next = times[j + 1] if j + 1 < len(times) else 0.0
        x, m = x + (t_next - tj) * v, m + (t_next - tj) * vm
    return x, m


def dmd_loop(student: AvatarGenerator, teacher, source: PairBatches, ode: ODEPairs | None, run_dir: Path, *,
             conditions: ConditionSpec, guidance: Guidance, student_steps: int, flow_shift: float, td: int, seed: int,
             warm_steps: int, dmd_steps: int, fake_updates: int, regression_weight: float, lr: float, fake_lr: float,
             checkpoint_every: int, mixed_precision: str = "no", device: str = "auto", resume: bool = True,
             progress: bool = True) -> DMDResult:
    """The DMD phase as its own accelerate loop (two optimizers, two time-scales); resumes from its newest checkpoint."""
    run_dir = Path(run_dir)
    accel = make_accelerator(mixed_precision, device)
    torch.manual_seed(seed)
    fake = AvatarGenerator(copy.deepcopy(teacher.transformer), copy.deepcopy(teacher.audio_encoder))
    fake.requires_grad_(True)
    models = DMDModels(student, fake)
    opt_s = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0, betas=(0.0, 0.99))
    opt_f = torch.optim.AdamW(fake.parameters(), lr=fake_lr, weight_decay=0.0, betas=(0.0, 0.99))
    models, opt_s, opt_f = accel.prepare(models, opt_s, opt_f)
    state = TrainState()
    accel.register_for_checkpointing(state)
    resumed_from = None
    if resume and (ckpts := list_checkpoints(run_dir)):
        accel.load_state(str(ckpts[-1]))
        resumed_from = state.step
    raw = accel.unwrap_model(models)
    times = student_times(student_steps, flow_shift)
    total = warm_steps + dmd_steps
    bar = None
    if progress and state.step < total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=state.step, desc="distill dmd", leave=False)
    raw.train()
    while state.step < total:
        step = state.step
        s = step_seed(seed, step)
        torch.manual_seed(s)
        gen = torch.Generator(device=accel.device).manual_seed(s)
        batch = _to(source.batch(step, 0, 1), accel.device)
        regression = None
        if ode is not None:
            regression = ode.regression_batch(step, source.bs, source.ws, td, conditions.motion_context_frames,
                                              accel.device)
        with accel.autocast():
            terms = dmd_step(raw, teacher, batch, regression, gen, conditions=conditions, guidance=guidance,
                             times=times, td=td, regression_weight=regression_weight, warm=step < warm_steps,
                             fake_updates=fake_updates, opt_student=opt_s, opt_fake=opt_f, accel=accel)
        state.step = step + 1
        state.history.append({"step": state.step, "phase": "warm" if step < warm_steps else "dmd",
                              "loss": terms.get("dmd", 0.0) + terms.get("regression", 0.0), **terms})
        if bar is not None:
            bar.update(1)
        if state.step % max(1, checkpoint_every) == 0 or state.step == total:
            save_checkpoint(accel, run_dir, state.step)
    if bar is not None:
        bar.close()
    write_history(run_dir / "history.jsonl", state.history)
    return DMDResult(student=raw.student.eval(), history=state.history, resumed_from=resumed_from)


# ------------------------------------------------------------------------------------------------ the stage
def guidance_of(cfg: Config) -> Guidance:
    return Guidance(audio=cfg.sampling.cfg_audio, reference=cfg.sampling.cfg_reference)


def nfe(steps: int, branches: int, chunks: int = 1) -> int:
    """Transformer passes for one video: steps × guidance branches × chunks."""
    return steps * branches * chunks


def run(cfg: Config, paths: StagePaths | None = None, *, resume: bool = True, progress: bool = True) -> dict:
    """Both phases; returns {"cfg": StageOutcome, "dmd": StageOutcome, "ode": ODEPairs, "ws", "vae", "teacher",
    "conditions"} for the notebook's curve and plots."""
    paths = paths or StagePaths()
    d = cfg.distill
    device = pick_device(cfg)
    vae = load_stage_vae(paths, device)
    vae.requires_grad_(False)
    td = vae.config.temporal_downsample
    teacher, conditions = load_teacher(paths.final("sft"), device)
    ws = stage_windows(cfg, cfg.train.sft, paths, vae, progress=progress)
    pairs = load_pairs(paths.curated, ws)
    context = conditions.motion_context_frames
    source = PairBatches(ws, pairs, d.batch_size, seed=cfg.seed + 4, splits=("train",), td=td, context_frames=context)

    # phase 1: CFG distillation
    torch.manual_seed(cfg.seed + 4)
    student = AvatarGenerator(teacher.transformer.with_config(guidance_embed=True),
                              copy.deepcopy(teacher.audio_encoder)).to(device)
    student.requires_grad_(True)
    phase1 = StageTrainConfig(steps=d.cfg_steps, batch_size=d.batch_size, lr=d.lr, warmup_steps=10,
                              checkpoint_every=d.checkpoint_every, mixed_precision=d.mixed_precision)

    def loss_fn(m, batch, gen, step):
        return cfg_distill_loss(m, teacher, batch, gen, conditions, td, d.cfg_audio_range, d.cfg_reference_range,
                                cfg.train.sft.timestep_shift)

    cfg_dir = paths.run_dir(STAGE) / "ablations" / "cfg"
    res = train_loop(student, loss_fn, source, phase1, cfg_dir, seed=cfg.seed + 4, resume=resume, use_muon=False,
                     accelerator=make_accelerator(d.mixed_precision, str(device)), progress=progress)
    cfg_student = (res.ema_model or res.model).eval()
    cfg_student.save(cfg_dir / "final", vae, cfg, conditions)
    cfg_out = StageOutcome("distill:cfg", cfg_dir, cfg_dir / "final", res.state.history,
                           {"steps": d.cfg_steps, **loss_drop(res.state.history), "resumed_from": res.resumed_from,
                            "nfe_per_chunk": nfe(cfg.sampling.steps, 1)})

    # phase 2: regression warm start on teacher ODE pairs, then DMD
    guidance = guidance_of(cfg)
    ode_items = PairBatches(ws, pairs, 1, seed=cfg.seed + 5, splits=("train",), td=td).items[: d.ode_pairs]
    ode = teacher_ode_pairs(teacher, vae, ws, ode_items, conditions, steps=cfg.sampling.steps, guidance=guidance,
                            seed=cfg.seed + 5, td=td)
    dmd_dir = paths.run_dir(STAGE)
    dmd = dmd_loop(copy.deepcopy(cfg_student).requires_grad_(True), teacher, source, ode, dmd_dir, conditions=conditions,
                   guidance=guidance, student_steps=d.student_steps, flow_shift=cfg.sampling.flow_shift, td=td,
                   seed=cfg.seed + 6, warm_steps=d.warm_steps, dmd_steps=d.dmd_steps, fake_updates=d.fake_updates,
                   regression_weight=d.regression_weight, lr=d.lr, fake_lr=d.fake_lr,
                   checkpoint_every=d.checkpoint_every, mixed_precision=d.mixed_precision, device=str(device),
                   resume=resume, progress=progress)
    dmd.student.save(paths.final(STAGE), vae, cfg, conditions, steps=d.student_steps)
    branches = 3  # no reference / reference / reference + audio
    dmd_out = StageOutcome("distill:dmd", dmd_dir, paths.final(STAGE), dmd.history, {
        "student_steps": d.student_steps, "warm_steps": d.warm_steps, "dmd_steps": d.dmd_steps,
        "fake_updates": d.fake_updates, "resumed_from": dmd.resumed_from,
        "nfe_per_chunk_teacher": nfe(cfg.sampling.steps, branches), "nfe_per_chunk_student": nfe(d.student_steps, 1),
        "nfe_ratio": nfe(cfg.sampling.steps, branches) / nfe(d.student_steps, 1),
        **_first_last(dmd.history)})
    return {"cfg": cfg_out, "dmd": dmd_out, "ode": ode, "ws": ws, "vae": vae, "teacher": teacher,
            "conditions": conditions, "pairs": pairs}


def _first_last(history: list[dict[str, float]], frac: float = 0.1) -> dict[str, float]:
    out = {}
    for key in ("regression", "dmd", "fake_flow"):
        vals = [h[key] for h in history if key in h and math.isfinite(h[key])]
        if vals:
            n = max(1, int(len(vals) * frac))
            out[f"{key}_first"], out[f"{key}_last"] = float(np.mean(vals[:n])), float(np.mean(vals[-n:]))
    return out


# ------------------------------------------------------------------------------------------------ steps vs quality
@torch.no_grad()
def steps_quality_curve(result: dict, cfg: Config, paths: StagePaths, *, progress: bool = False) -> list[dict]:
    """The DMD student at each of `distill.curve_steps` and the CFG student and teacher at the teacher's steps, on
    held-out cross-scene pairs from the same noise: distance to the teacher's frames (mean absolute grey levels),
    identity similarity to the reference by stage 3's evaluation face embedder (not trained by any loss here), and
    sharpness of the generated frames (Laplacian variance, the teacher's in the same table)."""
    from ..models.face_embedder import FaceEmbedder
    from .identity import embed_frames
    from .proof import generate_for_pairs, holdout_items

    ws, vae, conditions = result["ws"], result["vae"], result["conditions"]
    items = holdout_items(ws, result["pairs"], cfg.distill.eval_pairs)
    judge_dir = paths.run_dir("sft") / "face_embedder_eval"
    judge = FaceEmbedder.from_pretrained(str(judge_dir)).eval() if (judge_dir / "config.json").exists() else None
    guidance = guidance_of(cfg)
    cfg_student = AvatarGenerator.load(result["cfg"].final_dir, vae.device).eval()
    dmd_student = AvatarGenerator.load(result["dmd"].final_dir, vae.device).eval()
    systems = [("teacher", result["teacher"], cfg.sampling.steps, 3), ("distill:cfg", cfg_student, cfg.sampling.steps, 1)]
    systems += [("distill:dmd", dmd_student, s, 1) for s in cfg.distill.curve_steps]
    rows, teacher_frames = [], None
    for name, model, steps, branches in systems:
        frames = generate_for_pairs(model, vae, ws, items, conditions=conditions, steps=steps, seed=cfg.seed,
                                    guidance=guidance)
        if teacher_frames is None:
            teacher_frames = frames
        row = {"system": name, "steps": steps, "nfe_per_chunk": nfe(steps, branches),
               "mae_to_teacher": float((frames.float() - teacher_frames.float()).abs().mean()),
               "sharpness": sharpness(frames)}
        if judge is not None:
            sims = [float(embed_frames(judge, f, ws.face_box[int(t)]) @ embed_frames(judge, ws.frames[int(r)],
                                                                                    ws.face_box[int(r)]))
                    for f, (r, t) in zip(frames, items)]
            row["id_same"] = float(np.mean(sims))
        rows.append(row)
    return rows


def sharpness(frames: torch.Tensor) -> float:
    """Mean Laplacian variance of the grey frames (N, T, H, W, 3) uint8."""
    grey = frames.float().mean(-1).flatten(0, 1)[:, None]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    return float(F.conv2d(grey, kernel).flatten(1).var(1).mean())


def write_losses_csv(path: Path, cfg_history: list[dict], dmd_history: list[dict]) -> Path:
    """One row per optimizer step of both phases (dvc plots reads it)."""
    import pandas as pd

    rows = [{"phase": "cfg", "step": h["step"], "loss": h["loss"]} for h in cfg_history]
    base = len(cfg_history)
    rows += [{"phase": h["phase"], "step": base + h["step"], **{k: h[k] for k in ("loss", "regression", "dmd",
                                                                                   "fake_flow") if k in h}}
             for h in dmd_history]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def main(args) -> int:
    """`avatarv train --stage distill [--no-resume --corpus --curated --runs]`."""
    from ..config import load_config
    from .stage import paths_from_args

    cfg = load_config(args.profile)
    out = run(cfg, paths_from_args(args), resume=not args.no_resume)
    print(json.dumps({"stage": STAGE, "final": str(out["dmd"].final_dir), **out["dmd"].metrics}, default=str))
    return 0
