"""Stage 5, RLHF (seed: "RLHF ... GRPO with reward models, DPO on preference pairs, KL-regularised"): the last
curriculum stage fine-tunes the few-step student (runs/distill/final, else stage 3's runs/sft/final) towards what
people prefer, two ways, each against a frozen copy of the starting model (the reference):

1. GRPO (Shao et al. 2024) for flow models (Flow-GRPO, Liu et al. 2025): for each condition (a reference window +
   the target window's audio) a group of `group_size` videos is sampled with the SDE that has the flow ODE's
   marginals (diffusion/flow.py `sde_mean`; `AvatarVPipeline.sample_window(noise_level=η)`, the one sampler), so
   every sample has a log-likelihood under the policy; rewards are standardised within the group (advantages) and
   the PPO clipped surrogate plus `kl_beta` × the closed-form KL between the policy's and the reference's Gaussian
   transitions is descended. → runs/rlhf/final (leaderboard row `rlhf:grpo`).
2. Diffusion-DPO (Wallace et al. 2024), flow-matching form: on preference pairs (x_w ≻ x_l under one condition),
   both noised with one noise to one t, the loss is −log σ(−β/2 · [(e_w − e_w^ref) − (e_l − e_l^ref)]) with e the
   velocity error: the DPO sigmoid loss on the Gaussian ELBO log-likelihoods −e/2, its KL regularisation being the
   β of DPO's closed form. Pairs come from the study app's database when it holds human pairwise votes, else they
   are reward-ranked (best vs worst of a group of the starting model's samples). → runs/rlhf/ablations/dpo/final
   (row `rlhf:dpo`).

Rewards (`Rewards`, each per sample, higher = better): lip sync = the cosine of a sync expert trained here on the
clean training clips the evaluation's experts do NOT see, with another architecture (so stage 10's ranking judge
and the held-out check below stay independent of what was optimised); identity = the cosine of stage 3's training
face embedder (runs/sft/face_embedder) between generated face and reference; motion naturalness = −|log| of the
ratio of frame-to-frame motion speed (generated motion stream vs the reference clip's real motion history, per
channel); visual quality = −|log| of the ratio of sharpness (Laplacian variance) to the reference's.

trl (1.16): its DPOTrainer computes the DPO loss inline in `_compute_loss` from a language model's token
log-probabilities, and its GRPOTrainer samples text; neither takes a video flow model, so the losses here are
written for flows and tests/test_train_rlhf.py checks `dpo_sigmoid_loss` against the loss expression of trl's
sigmoid branch (and the paper) on fixed log-probabilities.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config
from ..data.datasets import WindowSet
from ..diffusion.flow import add_noise, gaussian_kl, gaussian_log_prob, sde_mean
from ..diffusion.guidance import Guidance
from ..errors import InputError
from ..inference.conditions import ConditionSpec
from ..models.latent_time import pool_to_latent_rate
from .generator import AvatarGenerator
from .loop import TrainState, list_checkpoints, make_accelerator, save_checkpoint, step_seed, write_history

STAGE = "rlhf"


# ------------------------------------------------------------------------------------------------ losses
def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages: each reward minus its group's mean, over the group's standard deviation (population);
    `rewards` (N,) holds N / group_size consecutive groups. A group whose rewards are all equal gets zeros."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    g = rewards.float().view(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, unbiased=False, keepdim=True) + eps)).flatten()


def grpo_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
              clip_range: float) -> tuple[torch.Tensor, float]:
    """PPO's clipped surrogate (to minimise) and the fraction of samples whose ratio was clipped."""
    ratio = torch.exp(logp - logp_old)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    frac = float(((ratio - 1).abs() > clip_range).float().mean())
    return torch.maximum(unclipped, clipped).mean(), frac


def dpo_sigmoid_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
                     ref_rejected_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO (Rafailov et al. 2023), per pair: −log σ(β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])."""
    return -F.logsigmoid(beta * ((chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)))


def diffusion_dpo_loss(err_w: torch.Tensor, err_l: torch.Tensor, ref_err_w: torch.Tensor, ref_err_l: torch.Tensor,
                       beta: float) -> torch.Tensor:
    """Diffusion-DPO per pair from the per-sample velocity errors of policy and reference at one (t, noise): DPO on
    the ELBO log-likelihoods −err/2."""
    return dpo_sigmoid_loss(-0.5 * err_w, -0.5 * err_l, -0.5 * ref_err_w, -0.5 * ref_err_l, beta)


# ------------------------------------------------------------------------------------------------ GRPO loop
@dataclass
class Rollout:
    """One group rollout: per stochastic sampler step the state before, the transition mean and std, and the state
    after (packed per sample: (N, D)); the combined reward and its terms per sample; what `means` needs."""

    steps: list[dict[str, Any]]
    rewards: torch.Tensor
    terms: dict[str, torch.Tensor]
    context: Any = None


class GRPOTask(Protocol):
    """What the GRPO loop needs of a model family: sample a group rollout; recompute a transition's mean."""

    group_size: int

    def rollout(self, policy, step: int, gen: torch.Generator) -> Rollout: ...

    def mean(self, model, rollout: Rollout, j: int) -> torch.Tensor: ...


@dataclass
class GRPOResult:
    policy: torch.nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None


def _prepare(policy, reference, run_dir: Path, *, lr: float, seed: int, mixed_precision: str, device: str,
             resume: bool):
    """The accelerator, prepared policy and AdamW, and the step counter, resumed from the newest checkpoint in
    `run_dir`. The policy runs in eval mode (no dropout: the rollout's log-likelihoods and the update's must be of
    one function); the reference is frozen."""
    accel = make_accelerator(mixed_precision, device)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    wrapped, opt = accel.prepare(policy, opt)
    state = TrainState()
    accel.register_for_checkpointing(state)
    resumed_from = None
    if resume and (ckpts := list_checkpoints(run_dir)):
        accel.load_state(str(ckpts[-1]))
        resumed_from = state.step
    accel.unwrap_model(wrapped).eval()
    reference.eval().requires_grad_(False)
    return accel, wrapped, opt, state, resumed_from


def grpo_loop(policy: torch.nn.Module, reference: torch.nn.Module, task: GRPOTask, run_dir: Path, *, steps: int,
              clip_range: float, kl_beta: float, inner_epochs: int, lr: float, seed: int, checkpoint_every: int,
              mixed_precision: str = "no", device: str = "auto", resume: bool = True, progress: bool = True,
              on_step=None) -> GRPOResult:
    """`steps` GRPO updates; resumes from the newest checkpoint in `run_dir` (rollout noise and condition choice are
    functions of (seed, step), so a resumed run replays the uninterrupted one)."""
    run_dir = Path(run_dir)
    accel, wrapped, opt, state, resumed_from = _prepare(policy, reference, run_dir, lr=lr, seed=seed,
                                                        mixed_precision=mixed_precision, device=device, resume=resume)
    raw = accel.unwrap_model(wrapped)
    trainable = [p for p in raw.parameters() if p.requires_grad]
    bar = None
    if progress and state.step < steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=state.step, desc="rlhf grpo", leave=False)
    while state.step < steps:
        step = state.step
        s = step_seed(seed, step)
        torch.manual_seed(s)
        gen = torch.Generator(device=accel.device).manual_seed(s)
        with torch.no_grad():
            ro = task.rollout(raw, step, gen)
            adv = group_advantages(ro.rewards, task.group_size).to(accel.device)
            old = [gaussian_log_prob(st["next"], st["mean"], st["std"]) for st in ro.steps]
            ref_means = [task.mean(reference, ro, j) for j in range(len(ro.steps))]
        kl_first = clipfrac = loss_v = 0.0
        for epoch in range(inner_epochs):
            kl_sum, loss_sum, frac_sum = 0.0, 0.0, 0.0
            for j, st in enumerate(ro.steps):
                with accel.autocast():
                    mean = task.mean(raw, ro, j)
                logp = gaussian_log_prob(st["next"], mean, st["std"])
                pg, frac = grpo_loss(logp, old[j], adv, clip_range)
                kl = gaussian_kl(mean, ref_means[j], st["std"]).mean()
                loss = (pg + kl_beta * kl) / len(ro.steps)
                accel.backward(loss)
                kl_sum += float(kl.detach()) / len(ro.steps)
                loss_sum += float(loss.detach())
                frac_sum += frac / len(ro.steps)
            accel.clip_grad_norm_(trainable, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if epoch == 0:
                kl_first = kl_sum
            clipfrac, loss_v = frac_sum, loss_sum
        state.step = step + 1
        state.history.append({"step": state.step, "reward": float(ro.rewards.mean()),
                              "reward_std": float(ro.rewards.std()), "kl": kl_first, "clipfrac": clipfrac,
                              "loss": loss_v, **{f"r_{k}": float(v.mean()) for k, v in ro.terms.items()}})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(reward=f"{state.history[-1]['reward']:.4f}", kl=f"{kl_first:.2e}")
        if state.step % max(1, checkpoint_every) == 0 or state.step == steps:
            save_checkpoint(accel, run_dir, state.step)
        if on_step is not None:
            on_step(state)
    if bar is not None:
        bar.close()
    write_history(run_dir / "history.jsonl", state.history)
    return GRPOResult(policy=raw, history=state.history, resumed_from=resumed_from)


# ------------------------------------------------------------------------------------------------ rewards
def laplacian_var(frames_u8: torch.Tensor) -> torch.Tensor:
    """(N, T, H, W, 3) uint8 → (N,) mean Laplacian variance of the grey frames (sharpness)."""
    grey = frames_u8.float().mean(-1)
    N, T = grey.shape[:2]
    kernel = grey.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    lap = F.conv2d(grey.flatten(0, 1)[:, None], kernel)
    return lap.flatten(1).var(1).view(N, T).mean(1)


def speed_ratio_penalty(generated: torch.Tensor, real: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(N,) mean over channels of |log(std of the generated frame-to-frame change / the real one's)|: 0 when the
    generated motion moves as fast as the person's real motion, per channel; frozen or jittery motion costs."""
    g = generated.float().diff(dim=1).std(1)
    r = real.float().diff(dim=1).std(1)
    return (torch.log(g + eps) - torch.log(r + eps)).abs().mean(1)


@dataclass
class Rewards:
    """The reward models: each term (N,) per sample, `weights` combine them."""

    sync: Any  # objectives.SyncLoss around the reward's own sync expert
    face: Any  # a FaceEmbedder
    weights: dict[str, float]

    def terms(self, video: torch.Tensor, motion: torch.Tensor, batch: dict[str, Any], transformer) -> dict[str, torch.Tensor]:
        """`video` (N, 3, T, H, W) in [-1, 1] decoded; `motion` (N, T', 16) normalised tokens; `batch` the pairs'."""
        from .identity import embed_frames

        N, T = video.shape[0], min(video.shape[2], batch["frames"].shape[1])
        cos = self.sync.window_cosines(video[:, :, :T], batch)
        sync = cos.mean(1) if cos is not None else video.new_zeros(N)
        frames = ((video[:, :, :T].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu()
        ref = batch["ref_frames"].cpu()
        ident = torch.tensor([float(embed_frames(self.face, frames[i], batch["face_box"][i, :T].cpu())
                                    @ embed_frames(self.face, ref[i], batch["ref_face_box"][i].cpu())) for i in range(N)])
        quality = -(torch.log(laplacian_var(frames) + 1.0) - torch.log(laplacian_var(ref) + 1.0)).abs()
        gen_motion = transformer.denormalize_motion(motion.float()).cpu()
        td = transformer.config.temporal_downsample
        history = batch.get("ref_motion_context", batch["ref_motion"]).float().cpu()
        real = pool_to_latent_rate(history, td) if td > 1 else history
        return {"sync": sync.float().cpu(), "identity": ident, "motion": -speed_ratio_penalty(gen_motion, real),
                "quality": quality}

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weights[k] * v for k, v in terms.items() if self.weights.get(k, 0.0))


# ------------------------------------------------------------------------------------------------ the avatar task
@dataclass
class AvatarTask:
    """GRPO on the avatar generator: conditions are (reference window, target window) pairs of `items`; a rollout
    samples each `group_size` times through the pipeline's sampler with SDE noise and scores the decoded videos."""

    vae: Any
    ws: WindowSet
    items: np.ndarray
    conditions: ConditionSpec
    rewards: Rewards
    prompts: int
    group_size: int
    noise_level: float
    steps: int
    guidance: Guidance
    seed: int
    flow_shift: float = 1.0
    tracked: dict[int, torch.Tensor] = field(default_factory=dict)  # target window → the face tracker's boxes

    def tracked_boxes(self, b: dict[str, Any]) -> torch.Tensor:
        """(N, T, 4) the eval face tracker's boxes of the batch's target frames (what the sync expert's crops
        follow), tracked once per window: a group repeats each window `group_size` times and conditions recur."""
        from .objectives import tracked_face_boxes

        if self.ws.tracked_box is not None:
            return self.ws.tracked_box[torch.as_tensor(b["window"])][:, : b["frames"].shape[1]]
        wins = [int(w) for w in b["window"]]
        todo = sorted({w for w in wins if w not in self.tracked})
        if todo:
            rows = [wins.index(w) for w in todo]
            for w, box in zip(todo, tracked_face_boxes(b["frames"][rows].cpu())):
                self.tracked[w] = box
        return torch.stack([self.tracked[w] for w in wins])

    def pipe(self, model):
        from .sampling import sampler

        return sampler(model, self.vae, self.conditions, self.flow_shift, self.steps)

    def pick(self, step: int) -> np.ndarray:
        rng = np.random.default_rng(step_seed(self.seed, step))
        return self.items[rng.choice(len(self.items), size=min(self.prompts, len(self.items)), replace=False)]

    def rollout(self, policy, step: int, gen: torch.Generator, items: np.ndarray | None = None) -> Rollout:
        from .proof import pair_window

        sel = np.repeat(self.pick(step) if items is None else items, self.group_size, axis=0)
        pipe = self.pipe(policy)
        tr, dev = pipe.transformer, pipe.transformer.device
        b, window = pair_window(pipe, self.ws, sel, self.conditions, step_seed(self.seed, step, 1))
        b["tracked_box"] = self.tracked_boxes(b)
        b = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in b.items()}
        audio = pipe.audio_encoder(b["mel"].float())
        cache = tr.encode_reference(window.ref_latents, window.ref_motion, window.ref_context)
        x = torch.randn(b["latents"].shape, generator=gen, device=dev)
        m = torch.randn(len(sel), b["latents"].shape[2], tr.config.motion_dim, generator=gen, device=dev)
        trace: list[dict] = []
        lat, mot = pipe.sample_window(x, m, window, audio=audio, reference_cache=cache, steps=self.steps,
                                      guidance=self.guidance, noise_level=self.noise_level, generator=gen, trace=trace)
        video = self.vae.decode(lat.to(self.vae.dtype)).float()
        terms = self.rewards.terms(video, mot, b, tr)
        steps = [{"t": st["t"], "t_next": st["t_next"], "sigma": st["sigma"], "std": st["std"], "lat": st["lat"],
                  "mot": st["mot"], "mean": _pack(st["mean_lat"], st["mean_mot"]),
                  "next": _pack(st["next_lat"], st["next_mot"])} for st in trace]
        return Rollout(steps=steps, rewards=self.rewards.combine(terms), terms=terms,
                       context={"batch": b, "window": window, "audio": audio, "latents": lat, "motion": mot})

    def mean(self, model, rollout: Rollout, j: int) -> torch.Tensor:
        """The transition mean of rollout step j under `model` (with gradients when enabled): the reference pass is
        recomputed, as it is part of the transformer being trained."""
        pipe = self.pipe(model)
        ctx, st = rollout.context, rollout.steps[j]
        w = ctx["window"]
        cache = pipe.transformer.encode_reference(w.ref_latents, w.ref_motion, w.ref_context)
        sigma = torch.full((1,), st["t"], device=st["lat"].device)
        v_lat, v_mot = pipe.velocity(st["lat"], st["mot"], sigma, w, audio=ctx["audio"], reference_cache=cache,
                                     guidance=self.guidance)
        return _pack(sde_mean(st["lat"].float(), v_lat.float(), st["t"], st["t_next"], st["sigma"]),
                     sde_mean(st["mot"].float(), v_mot.float(), st["t"], st["t_next"], st["sigma"]))


def _pack(lat: torch.Tensor, mot: torch.Tensor) -> torch.Tensor:
    return torch.cat([lat.flatten(1), mot.flatten(1)], 1)


# ------------------------------------------------------------------------------------------------ preferences
PREF_FIELDS = ("pair_id", "ref_window", "target_window", "score_chosen", "score_rejected")


def window_id(ws: WindowSet, i: int) -> str:
    """A window's stable id: `<clip_id>@<start frame>`."""
    row = ws.meta.iloc[int(i)]
    return f"{row['clip_id']}@{int(row['start'])}"


def row_digest(row: dict[str, Any], tensors: dict[str, torch.Tensor], i: int) -> str:
    """sha256 over a row's fields and its pair's latents/motion: a row edited after writing no longer matches."""
    h = hashlib.sha256(json.dumps({k: row[k] for k in PREF_FIELDS}, sort_keys=True).encode())
    for k in sorted(tensors):
        h.update(tensors[k][i].contiguous().numpy().tobytes())
    return h.hexdigest()


def write_preferences(path: Path, rows: list[dict[str, Any]], tensors: dict[str, torch.Tensor]) -> Path:
    """`<path>` (JSON lines, one pair per line, with its digest) + `<path>.pt` (chosen/rejected latents and motion,
    row i = line i), both written atomically."""
    from ..media.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [{**r, "digest": row_digest(r, tensors, i)} for i, r in enumerate(rows)]
    with atomic_path(path.with_suffix(path.suffix + ".pt")) as tmp:
        torch.save({k: v.contiguous() for k, v in tensors.items()}, tmp)
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


@dataclass
class Preferences:
    ref: np.ndarray  # (P,) reference window rows
    target: np.ndarray  # (P,) target window rows
    tensors: dict[str, torch.Tensor]  # chosen_lat, rejected_lat, chosen_mot, rejected_mot
    dropped_ties: int
    source: str

    def __len__(self) -> int:
        return len(self.ref)


def load_preferences(path: Path, ws: WindowSet, source: str = "file") -> Preferences:
    """Read and check a preference file: every row parses, names known windows, matches its digest; ties (equal
    scores) carry no preference and are dropped. Any bad row, or nothing left to learn from, is one line naming
    the file and the problem (the stage never trains on a silently empty set)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no preference file")
    try:
        tensors = torch.load(path.with_suffix(path.suffix + ".pt"), weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise InputError(path.with_suffix(path.suffix + ".pt"), f"unreadable preference tensors ({type(e).__name__})") from None
    known = {window_id(ws, i): i for i in range(len(ws))}
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise InputError(path, "no preference pairs (empty file)")
    keep, ref, target, ties = [], [], [], 0
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            missing = [k for k in (*PREF_FIELDS, "digest") if k not in row]
        except json.JSONDecodeError:
            raise InputError(path, f"line {n}: not JSON") from None
        if missing:
            raise InputError(path, f"line {n}: missing {missing[0]}")
        for key in ("ref_window", "target_window"):
            if row[key] not in known:
                raise InputError(path, f"line {n}: unknown clip id {row[key]!r}")
        if n - 1 >= min(len(v) for v in tensors.values()):
            raise InputError(path, f"line {n}: no tensors for this row (the .pt file holds fewer pairs)")
        if row_digest(row, tensors, n - 1) != row["digest"]:
            raise InputError(path, f"line {n}: tampered row (digest does not match its fields and tensors)")
        if float(row["score_chosen"]) == float(row["score_rejected"]):
            ties += 1
            continue
        if float(row["score_chosen"]) < float(row["score_rejected"]):
            raise InputError(path, f"line {n}: chosen scores below rejected")
        keep.append(n - 1)
        ref.append(known[row["ref_window"]])
        target.append(known[row["target_window"]])
    if not keep:
        raise InputError(path, f"only ties ({ties} rows): no preference to learn from")
    idx = torch.as_tensor(keep)
    return Preferences(ref=np.asarray(ref), target=np.asarray(target),
                       tensors={k: v[idx] for k, v in tensors.items()}, dropped_ties=ties, source=source)


@torch.no_grad()
def reward_ranked_pairs(task: AvatarTask, model, items: np.ndarray, *, min_margin: float, seed: int
                        ) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """For each condition of `items`, `group_size` SDE samples of `model` scored by the rewards: best ≻ worst, a
    pair unless their rewards differ by `min_margin` or less (then the row is written as a tie)."""
    rows, out = [], {k: [] for k in ("chosen_lat", "rejected_lat", "chosen_mot", "rejected_mot")}
    for i in range(0, len(items), task.prompts):
        chunk = items[i : i + task.prompts]
        gen = torch.Generator(device=task.vae.device).manual_seed(step_seed(seed, i))
        ro = task.rollout(model, i, gen, items=chunk)
        r = ro.rewards.view(len(chunk), task.group_size)
        lat = ro.context["latents"].view(len(chunk), task.group_size, *ro.context["latents"].shape[1:]).cpu()
        mot = ro.context["motion"].view(len(chunk), task.group_size, *ro.context["motion"].shape[1:]).cpu()
        for c, (ref_i, tgt_i) in enumerate(chunk):
            best, worst = int(r[c].argmax()), int(r[c].argmin())
            tie = float(r[c, best] - r[c, worst]) <= min_margin
            rows.append({"pair_id": f"p{len(rows):05d}", "ref_window": window_id(task.ws, ref_i),
                         "target_window": window_id(task.ws, tgt_i), "score_chosen": float(r[c, best]),
                         "score_rejected": float(r[c, best] if tie else r[c, worst])})
            out["chosen_lat"].append(lat[c, best])
            out["rejected_lat"].append(lat[c, worst])
            out["chosen_mot"].append(mot[c, best])
            out["rejected_mot"].append(mot[c, worst])
    return rows, {k: torch.stack(v).float() for k, v in out.items()}


def study_votes(db: Path) -> dict[str, int]:
    """Pairwise votes with a winner in a study database: {"human": …, "simulated": …} (0, 0 without a database)."""
    if not Path(db).exists():
        return {"human": 0, "simulated": 0}
    rows = _study_query(db, "SELECT a.simulated, COUNT(*) FROM answers a JOIN assignments g ON a.assignment_id = g.id "
                            "JOIN cases c ON g.case_id = c.id WHERE c.kind = 'pairwise' AND a.choice IN ('left', 'right') "
                            "GROUP BY a.simulated")
    counts = {bool(s): int(n) for s, n in rows}
    return {"human": counts.get(False, 0), "simulated": counts.get(True, 0)}


def _study_query(db: Path, sql: str) -> list[tuple]:
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.DatabaseError as e:
        raise InputError(Path(db), f"not a study database ({e})") from None
    finally:
        con.close()


def study_preference_votes(db: Path) -> list[dict[str, Any]]:
    """The human (never the simulated) pairwise votes of a study, per case: both videos and each side's vote share
    (a tie counts half to each side), winner first; a case whose shares are equal is kept as a tie."""
    rows = _study_query(db, "SELECT c.key, s.media_root, c.left_media, c.right_media, a.choice FROM answers a "
                            "JOIN assignments g ON a.assignment_id = g.id JOIN cases c ON g.case_id = c.id "
                            "JOIN studies s ON c.study_id = s.id WHERE c.kind = 'pairwise' AND a.simulated = 0 "
                            "AND a.choice IN ('left', 'right', 'tie') ORDER BY c.key")
    cases: dict[str, dict[str, Any]] = {}
    for key, root, left, right, choice in rows:
        c = cases.setdefault(key, {"case": key, "media_root": root, "left": left, "right": right, "l": 0.0, "n": 0})
        c["l"] += {"left": 1.0, "tie": 0.5, "right": 0.0}[choice]
        c["n"] += 1
    out = []
    for c in cases.values():
        share = c["l"] / c["n"]
        win, lose = (c["left"], c["right"]) if share >= 0.5 else (c["right"], c["left"])
        out.append({"case": c["case"], "media_root": c["media_root"], "chosen": win, "rejected": lose,
                    "score_chosen": max(share, 1 - share), "score_rejected": min(share, 1 - share), "votes": c["n"]})
    return out


@torch.no_grad()
def study_pairs(votes: list[dict[str, Any]], ws: WindowSet, pairs, vae, transformer
                ) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Preference rows + tensors from human votes: each case's target clip (the bundle's manifest.csv `clip_id`)
    gives the condition (its first window, with a cross-scene reference window of the same person from the curated
    pairs); each voted video's first window is encoded by the VAE (latents) and measured by the motion extractor
    (motion tokens) as the sample that condition produced. A case that cannot be placed is one line naming it."""
    import pandas as pd

    from ..inference.pipeline import square_resize
    from ..media import read_video
    from ..models.motion import extract_motion
    from ..study.manifest import resolve_media

    T = ws.frames.shape[1]
    size, td = ws.frames.shape[2], transformer.config.temporal_downsample
    manifests: dict[str, pd.DataFrame] = {}
    rows, out = [], {k: [] for k in ("chosen_lat", "rejected_lat", "chosen_mot", "rejected_mot")}
    for v in votes:
        man_path = Path(v["media_root"]) / "manifest.csv"
        if v["media_root"] not in manifests:
            if not man_path.exists():
                raise InputError(man_path, "no study manifest: cannot tell which clip the voted videos answer")
            manifests[v["media_root"]] = pd.read_csv(man_path).set_index("case_id")
        man = manifests[v["media_root"]]
        if "clip_id" not in man.columns or v["case"] not in man.index:
            raise InputError(man_path, f"case {v['case']}: no clip_id for it")
        clip = str(man.at[v["case"], "clip_id"])
        if clip not in ws.clip_windows:
            raise InputError(man_path, f"case {v['case']}: unknown clip id {clip!r}")
        refs = pairs.loc[pairs["target_clip_id"] == clip, "ref_clip_id"]
        refs = [r for r in refs if r in ws.clip_windows]
        if not refs:
            raise InputError(man_path, f"case {v['case']}: no cross-scene reference clip for {clip!r}")
        tgt, ref = int(ws.clip_windows[clip][0]), int(ws.clip_windows[refs[0]][0])
        for side in ("chosen", "rejected"):
            path = resolve_media(v["media_root"], v[side])
            frames = read_video(path, max_frames=T).frames
            if len(frames) < T:
                raise InputError(path, f"case {v['case']}: {len(frames)} frames, the window needs {T}")
            pix = square_resize(frames[:T], size).to(vae.device, vae.dtype)
            out[f"{side}_lat"].append(vae.encode(pix)[0].float().cpu())
            m = torch.from_numpy(extract_motion(frames[:T]))[None].float()
            m = pool_to_latent_rate(m, td) if td > 1 else m
            out[f"{side}_mot"].append(transformer.normalize_motion(m.to(transformer.device))[0].float().cpu())
        rows.append({"pair_id": f"study_{v['case']}", "ref_window": window_id(ws, ref),
                     "target_window": window_id(ws, tgt), "score_chosen": v["score_chosen"],
                     "score_rejected": v["score_rejected"]})
    return rows, {k: torch.stack(x) for k, x in out.items()}


# ------------------------------------------------------------------------------------------------ DPO loop
def velocity_errors(model, task: AvatarTask, b: dict[str, Any], window, x0: torch.Tensor, m0: torch.Tensor,
                    noise: torch.Tensor, m_noise: torch.Tensor, t: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """(N,) per-sample mean squared velocity error (video latents and motion tokens together) at (t, noise)."""
    pipe = task.pipe(model)
    tr = pipe.transformer
    cache = tr.encode_reference(window.ref_latents, window.ref_motion, window.ref_context)
    v_lat, v_mot = pipe.velocity(add_noise(x0, noise, t), add_noise(m0, m_noise, t), t, window, audio=audio,
                                 reference_cache=cache, guidance=task.guidance)
    return (_pack(v_lat.float(), v_mot.float()) - _pack(noise - x0, m_noise - m0)).square().mean(1)


def dpo_loop(policy, reference, task: AvatarTask, prefs: Preferences, run_dir: Path, *, steps: int, batch: int,
             beta: float, lr: float, seed: int, checkpoint_every: int, mixed_precision: str = "no",
             device: str = "auto", resume: bool = True, progress: bool = True) -> GRPOResult:
    """Diffusion-DPO on `prefs`; resumes from the newest checkpoint in `run_dir`."""
    from .proof import pair_window

    if len(prefs) == 0:
        raise InputError(Path(run_dir), "no preference pairs to train on")
    run_dir = Path(run_dir)
    accel, wrapped, opt, state, resumed_from = _prepare(policy, reference, run_dir, lr=lr, seed=seed,
                                                        mixed_precision=mixed_precision, device=device, resume=resume)
    raw = accel.unwrap_model(wrapped)
    trainable = [p for p in raw.parameters() if p.requires_grad]
    dev = accel.device
    bar = None
    if progress and state.step < steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=state.step, desc="rlhf dpo", leave=False)
    while state.step < steps:
        step = state.step
        s = step_seed(seed, step)
        torch.manual_seed(s)
        gen = torch.Generator(device=dev).manual_seed(s)
        rng = np.random.default_rng(s)
        sel = rng.choice(len(prefs), size=min(batch, len(prefs)), replace=False)
        pipe = task.pipe(raw)
        b, window = pair_window(pipe, task.ws, np.stack([prefs.ref[sel], prefs.target[sel]], 1), task.conditions, s)
        b = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in b.items()}
        with torch.no_grad():
            audio = pipe.audio_encoder(b["mel"].float())
        xw, xl = prefs.tensors["chosen_lat"][sel].to(dev), prefs.tensors["rejected_lat"][sel].to(dev)
        mw, ml = prefs.tensors["chosen_mot"][sel].to(dev), prefs.tensors["rejected_mot"][sel].to(dev)
        n = len(sel)
        t = (0.02 + 0.96 * torch.rand(n, generator=gen, device=dev))
        noise = torch.randn(xw.shape, generator=gen, device=dev)
        m_noise = torch.randn(mw.shape, generator=gen, device=dev)
        both = dict(window=_twice(window), noise=torch.cat([noise, noise]), m_noise=torch.cat([m_noise, m_noise]),
                    t=torch.cat([t, t]), audio=torch.cat([audio, audio]))
        x0, m0 = torch.cat([xw, xl]), torch.cat([mw, ml])
        with torch.no_grad():
            ref_err = velocity_errors(reference, task, b, x0=x0, m0=m0, **both)
        with accel.autocast():
            err = velocity_errors(raw, task, b, x0=x0, m0=m0, **both)
        loss_each = diffusion_dpo_loss(err[:n], err[n:], ref_err[:n], ref_err[n:], beta)
        loss = loss_each.mean()
        accel.backward(loss)
        accel.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        margin = ((ref_err[:n] - err[:n].detach()) - (ref_err[n:] - err[n:].detach()))
        state.step = step + 1
        state.history.append({"step": state.step, "loss": float(loss.detach()), "accuracy": float((margin > 0).float().mean()),
                              "margin": float(margin.mean()), "err_chosen": float(err[:n].mean()),
                              "err_rejected": float(err[n:].mean())})
        if bar is not None:
            bar.update(1)
        if state.step % max(1, checkpoint_every) == 0 or state.step == steps:
            save_checkpoint(accel, run_dir, state.step)
    if bar is not None:
        bar.close()
    write_history(run_dir / "history.jsonl", state.history)
    return GRPOResult(policy=raw, history=state.history, resumed_from=resumed_from)


def _twice(window):
    """Window conditions of a batch stacked on themselves (chosen and rejected share their condition)."""
    import dataclasses

    def dup(v):
        if torch.is_tensor(v):
            return torch.cat([v, v])
        if isinstance(v, list):
            return [tuple(dup(x) for x in a) if isinstance(a, tuple) else dup(a) for a in v]
        return v

    return dataclasses.replace(window, **{f.name: dup(getattr(window, f.name)) for f in dataclasses.fields(window)})


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def heldout_metrics(model, task: AvatarTask, items: np.ndarray, *, judges: dict[str, Any], reference=None,
                    seed: int) -> dict[str, float]:
    """On held-out pairs, deterministic (ODE) samples from fixed noise: the reward terms (what was optimised) and
    independent judges (`judges`: "sync" a SyncLoss around another sync expert, "face" another face embedder) plus
    BRISQUE; with `reference`, the mean KL per SDE step between `model` and `reference` along `model`'s own SDE
    samples of the same conditions."""
    from ..eval.quality import clip_quality
    from .identity import embed_frames

    ode = copy.copy(task)
    ode.group_size, ode.noise_level = 1, 0.0
    gen = torch.Generator(device=task.vae.device).manual_seed(seed)
    ro = ode.rollout(model, 0, gen, items=items)
    out = {f"reward_{k}": float(v.mean()) for k, v in ro.terms.items()}
    out["reward"] = float(ro.rewards.mean())
    b, lat = ro.context["batch"], ro.context["latents"]
    video = task.vae.decode(lat.to(task.vae.dtype)).float()
    T = min(video.shape[2], b["frames"].shape[1])
    cos = judges["sync"].window_cosines(video[:, :, :T], b)
    out["heldout_sync"] = float(cos.mean()) if cos is not None else float("nan")
    frames = ((video[:, :, :T].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu()
    face = judges["face"]
    out["heldout_identity"] = float(np.mean([float(embed_frames(face, frames[i], b["face_box"][i, :T].cpu())
                                                   @ embed_frames(face, b["ref_frames"][i].cpu(), b["ref_face_box"][i].cpu()))
                                             for i in range(len(frames))]))
    out["heldout_brisque"] = float(np.mean([clip_quality(f.numpy(), n_frames=2, metrics=("brisque",))["brisque"]
                                            for f in frames]))
    if reference is not None:
        sde = copy.copy(task)
        sde.group_size = 1
        ro = sde.rollout(model, 0, torch.Generator(device=task.vae.device).manual_seed(seed + 1), items=items)
        kls = [float(gaussian_kl(sde.mean(model, ro, j), sde.mean(reference, ro, j), st["std"]).mean())
               for j, st in enumerate(ro.steps)]
        out["kl_to_reference"] = float(np.mean(kls)) if kls else 0.0
    return out


HIGHER_IS_BETTER = {"heldout_sync": True, "heldout_identity": True, "heldout_brisque": False}
# each optimised reward term and the independent held-out metric that checks it
CHECKS = {"sync": "heldout_sync", "identity": "heldout_identity", "quality": "heldout_brisque"}


def reward_hacking(history: list[dict[str, float]], before: dict[str, float], after: dict[str, float],
                   frac: float = 0.25) -> dict[str, dict[str, Any]]:
    """Per reward term with an independent check: did the reward on the held-out pairs (same conditions, same noise,
    before vs after) rise while the independent held-out metric got worse? Such a term is reported as reward
    hacking. The training curve's change (mean of the last vs first `frac` of the steps, other conditions each
    step) is reported beside it."""
    out = {}
    n = max(1, int(len(history) * frac))
    for term, metric in CHECKS.items():
        key = f"reward_{term}"
        if key not in before or key not in after or metric not in before or metric not in after:
            continue
        vals = [h[f"r_{term}"] for h in history if f"r_{term}" in h]
        rise = after[key] - before[key]
        delta = after[metric] - before[metric]
        worse = delta < 0 if HIGHER_IS_BETTER[metric] else delta > 0
        out[term] = {"heldout_reward_change": float(rise), "heldout_metric": metric, "heldout_change": float(delta),
                     "reward_hacking": bool(rise > 0 and worse)}
        if vals:
            out[term]["train_curve_change"] = float(np.mean(vals[-n:]) - np.mean(vals[:n]))
    return out


# ------------------------------------------------------------------------------------------------ the stage
def start_model(paths) -> tuple[Path, str]:
    """runs/distill/final when stage 4 ran, else stage 3's runs/sft/final."""
    from ..inference.pipeline import is_saved_pipeline

    for stage in ("distill", "sft"):
        if is_saved_pipeline(paths.final(stage)):
            return paths.final(stage), stage
    raise InputError(paths.final("sft"), "no starting pipeline: run stage 05_personality_sft (and 06_distill) first")


def reward_sync_judge(cfg: Config, paths, progress: bool = True):
    """The reward's sync expert: trained on the clean training clips that the evaluation's experts (stage 10's
    ranking judge, the stages' grader) do not train on, with another width and embedding size, saved to
    runs/rlhf/sync_judge (reused when there)."""
    import pandas as pd

    from ..models.sync_expert import load_sync_expert
    from .sync_expert import clean_clips, eval_judge_clips, train_expert

    out = paths.run_dir(STAGE) / "sync_judge"
    info = {"path": _rel(out)}
    if not (out / "config.json").exists():
        manifest = pd.read_parquet(Path(paths.corpus) / "manifest.parquet")
        taken = set(eval_judge_clips(cfg, manifest)["clip_id"])
        rest = clean_clips(manifest, "train")
        rest = rest[~rest["clip_id"].isin(taken)]
        if len(rest) < 4:
            raise InputError(Path(paths.corpus) / "manifest.parquet",
                             f"only {len(rest)} clean training clips outside the evaluation judge's set")
        r = cfg.rlhf
        info = train_expert(cfg, Path(paths.corpus), manifest, out, progress=progress, seed=cfg.seed + 71, rows=rest,
                            steps=r.sync_judge_steps,
                            architecture={"channels": r.sync_judge_channels, "embed_dim": r.sync_judge_embed_dim})
        info = {k: v for k, v in info.items() if k != "loss_curve"}
        info["path"] = _rel(out)
        info["disjoint_from_eval_judge"] = True
    judge = load_sync_expert(out)
    judge.requires_grad_(False)
    return judge, info


def run(cfg: Config, paths=None, *, resume: bool = True, progress: bool = True) -> dict:
    """GRPO, then DPO, each from the starting model; held-out metrics of all three. Returns a dict for the notebook."""
    from ..data.datasets import PairBatches, load_pairs
    from ..models.face_embedder import FaceEmbedder
    from .distill import guidance_of
    from .objectives import SyncLoss
    from .proof import holdout_items
    from .stage import StagePaths, load_stage_vae, pick_device, stage_windows

    paths = paths or StagePaths()
    r = cfg.rlhf
    device = pick_device(cfg)
    src, src_stage = start_model(paths)
    from ..inference.pipeline import saved_conditions

    conditions = saved_conditions(src)
    steps = int(json.loads((src / "model_index.json").read_text()).get("steps") or cfg.sampling.steps)
    vae = load_stage_vae(paths, device)
    vae.requires_grad_(False)
    ws = stage_windows(cfg, cfg.train.sft, paths, vae, progress=progress)
    pairs = load_pairs(paths.curated, ws)
    train_items = PairBatches(ws, pairs, 1, seed=cfg.seed + 7, splits=("train",)).items
    eval_items = holdout_items(ws, pairs, r.eval_pairs)

    judge, judge_info = reward_sync_judge(cfg, paths, progress)
    face = FaceEmbedder.from_pretrained(str(paths.run_dir("sft") / "face_embedder")).eval().requires_grad_(False)
    rewards = Rewards(sync=SyncLoss(vae, judge.to(device)), face=face,
                      weights={"sync": r.w_sync, "identity": r.w_identity, "motion": r.w_motion, "quality": r.w_quality})
    from .stage import SYNC_GRADER_SEED_OFFSET, load_sync_judge

    judges = {"sync": SyncLoss(vae, load_sync_judge(cfg, paths, progress, name="sync_grader",
                                                    seed_offset=SYNC_GRADER_SEED_OFFSET, device=device)),
              "face": FaceEmbedder.from_pretrained(str(paths.run_dir("sft") / "face_embedder_eval")).eval()}

    def fresh() -> AvatarGenerator:
        g = AvatarGenerator.load(src, device)
        g.audio_encoder.requires_grad_(False)
        g.transformer.requires_grad_(True)
        return g

    reference = AvatarGenerator.load(src, device).eval().requires_grad_(False)
    task = AvatarTask(vae=vae, ws=ws, items=train_items, conditions=conditions, rewards=rewards,
                      prompts=r.prompts_per_step, group_size=r.group_size, noise_level=r.noise_level, steps=steps,
                      guidance=guidance_of(cfg), seed=cfg.seed + 8, flow_shift=cfg.sampling.flow_shift)
    before = heldout_metrics(reference, task, eval_items, judges=judges, seed=cfg.seed)

    # GRPO
    grpo = grpo_loop(fresh(), reference, task, paths.run_dir(STAGE), steps=r.grpo_steps, clip_range=r.clip_range,
                     kl_beta=r.kl_beta, inner_epochs=r.inner_epochs, lr=r.lr, seed=cfg.seed + 9,
                     checkpoint_every=r.checkpoint_every, mixed_precision=r.mixed_precision, device=str(device),
                     resume=resume, progress=progress)
    grpo.policy.save(paths.final(STAGE), vae, cfg, conditions, steps=steps)
    after_grpo = heldout_metrics(grpo.policy, task, eval_items, judges=judges, reference=reference, seed=cfg.seed)

    # DPO: human pairwise votes when the study database has them, else reward-ranked pairs
    db = Path(paths.runs) / "study" / "study.db"  # `avatarv study create`'s default database
    votes = study_votes(db)
    dpo_dir = paths.run_dir(STAGE) / "ablations" / "dpo"
    # one file per source, so pairs built before human votes arrived are never mistaken for them
    pref_path = dpo_dir / ("preferences_study.jsonl" if votes["human"] else "preferences_reward.jsonl")
    if votes["human"]:
        source = f"study: {votes['human']} human pairwise votes in {_rel(db)}"
        if not pref_path.exists():
            rows, tensors = study_pairs(study_preference_votes(db), ws, pairs, vae, reference.transformer)
            write_preferences(pref_path, rows, tensors)
    else:
        source = "reward-ranked (no human pairwise votes in the study database)"
        if not pref_path.exists():
            rng = np.random.default_rng(cfg.seed + 10)
            cond_items = train_items[rng.choice(len(train_items), size=min(r.dpo_conditions, len(train_items)),
                                                replace=False)]
            rows, tensors = reward_ranked_pairs(task, reference, cond_items, min_margin=r.dpo_min_margin,
                                                seed=cfg.seed + 10)
            write_preferences(pref_path, rows, tensors)
    prefs = load_preferences(pref_path, ws, source)
    dpo = dpo_loop(fresh(), reference, task, prefs, dpo_dir, steps=r.dpo_steps, batch=r.dpo_batch, beta=r.dpo_beta,
                   lr=r.dpo_lr, seed=cfg.seed + 11, checkpoint_every=r.checkpoint_every,
                   mixed_precision=r.mixed_precision, device=str(device), resume=resume, progress=progress)
    dpo.policy.save(dpo_dir / "final", vae, cfg, conditions, steps=steps)
    after_dpo = heldout_metrics(dpo.policy, task, eval_items, judges=judges, reference=reference, seed=cfg.seed)

    metrics = {
        "start_model": _rel(src), "start_stage": src_stage, "sampling_steps": steps,
        "reward_sync_judge": judge_info,
        "heldout_judges": {"sync": "runs/a2v/sync_grader (stages' grader; not the reward's)",
                           "identity": "runs/sft/face_embedder_eval (not the reward's runs/sft/face_embedder)",
                           "quality": "BRISQUE (eval/quality.py)"},
        "grpo": {"steps": r.grpo_steps, "group_size": r.group_size, "prompts_per_step": r.prompts_per_step,
                 "resumed_from": grpo.resumed_from, **_first_last(grpo.history, ("reward", "kl", "r_sync",
                                                                                 "r_identity", "r_motion", "r_quality")),
                 "reward_hacking": reward_hacking(grpo.history, before, after_grpo)},
        "dpo": {"steps": r.dpo_steps, "pairs": len(prefs), "dropped_ties": prefs.dropped_ties,
                "preference_source": source, "study_db": _rel(db), "study_votes": votes,
                "resumed_from": dpo.resumed_from, **_first_last(dpo.history, ("loss", "accuracy", "margin")),
                "reward_hacking": reward_hacking([], before, after_dpo)},
        "heldout": {"start": before, "rlhf:grpo": after_grpo, "rlhf:dpo": after_dpo},
    }
    return {"metrics": metrics, "grpo": grpo, "dpo": dpo, "before": before, "after_grpo": after_grpo,
            "after_dpo": after_dpo}


def _rel(path: Path) -> str:
    """A path as the metrics name it: relative to the repository when inside it."""
    from ..paths import ROOT

    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _first_last(history: list[dict[str, float]], keys, frac: float = 0.25) -> dict[str, float]:
    out = {}
    for key in keys:
        vals = [h[key] for h in history if key in h and math.isfinite(h[key])]
        if vals:
            n = max(1, int(len(vals) * frac))
            out[f"{key}_first"], out[f"{key}_last"] = float(np.mean(vals[:n])), float(np.mean(vals[-n:]))
    return out


def write_curves_csv(path: Path, grpo_history: list[dict], dpo_history: list[dict]) -> Path:
    """One row per step of each method (dvc plots reads it)."""
    import pandas as pd

    rows = [{"method": "grpo", **h} for h in grpo_history] + [{"method": "dpo", **h} for h in dpo_history]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def main(args) -> int:
    """`avatarv train --stage rlhf [--no-resume --corpus --curated --runs]`."""
    from ..config import load_config
    from .stage import paths_from_args

    cfg = load_config(args.profile)
    out = run(cfg, paths_from_args(args), resume=not args.no_resume)
    print(json.dumps({"stage": STAGE, **out["metrics"]}, default=str))
    return 0
