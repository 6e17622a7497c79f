"""The one training loop shared by every curriculum stage (seed: "How It Learns", stages 1–3; issue 7).

accelerate owns the device, bf16 autocast (GPU), DDP/FSDP wrapping, gradient sync and `save_state`/`load_state`;
this module adds what a resumable, reproducible run needs on top:

- Data order and noise are pure functions of (seed, step, rank): each micro-batch comes from
  `source.batch(index, rank, world)` and each step draws from a `torch.Generator` seeded from (seed, step, rank),
  and the global RNG is reseeded per step (dropout). A resumed run therefore needs no dataloader cursor or RNG
  snapshot to replay exactly — it recomputes them from the step count stored in the checkpoint (accelerate still
  saves its RNG states too). Result: a run killed at any point and resumed from its last checkpoint ends with
  bit-identical weights, EMA and loss history on CPU (tests/test_train_loop.py kills a real process to check).
- Gradient accumulation over `grad_accum` micro-batches (no gradient all-reduce until the last one).
- Muon + AdamW with warmup + cosine (train/optim.py), gradient clipping, EMA weights (diffusers `EMAModel`).
- `cfg.time_limit_s` > 0 stops the run after that many seconds of training (a fixed GPU budget): the result says
  how many steps were done (`LoopResult.stopped_early`), and no checkpoint is written for the cut.
- `cfg.stream`: micro-batches come through a DataLoader (data/loader.LoaderSource) whose workers cut them
  ahead of the step; the same batches, so the same run.
- Checkpoints every `checkpoint_every` steps under `<run_dir>/checkpoints/step_XXXXXX` (written to a temporary
  name, then renamed, so a kill during saving never leaves a half checkpoint that resume would pick), the last
  `keep` kept; `resume=True` continues from the newest one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..config import StageTrainConfig
from .optim import build_optimizers, build_schedulers

CHECKPOINT_PREFIX = "step_"


class BatchSource(Protocol):
    """Deterministic data: micro-batch number `index` for `rank` of `world` (same answer every time it is asked)."""

    def batch(self, index: int, rank: int, world: int) -> dict[str, Any]: ...


# loss_fn(model, batch, generator, step) -> (scalar loss, {term: float}) — the stage's objective
LossFn = Callable[[nn.Module, dict[str, Any], torch.Generator, int], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class TrainState:
    """Step counter and loss history, checkpointed with the weights (accelerate `register_for_checkpointing`)."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def state_dict(self) -> dict:
        return {"step": self.step, "history": json.dumps(self.history)}

    def load_state_dict(self, sd: dict) -> None:
        self.step = int(sd["step"])
        self.history = json.loads(sd["history"])


@dataclass
class LoopResult:
    model: nn.Module  # unwrapped, raw (non-EMA) weights
    ema_model: nn.Module | None  # a copy holding the EMA weights (None when EMA is off)
    state: TrainState
    run_dir: Path
    resumed_from: int | None  # step of the checkpoint this run started from
    stopped_early: bool = False  # cfg.time_limit_s ran out before total_steps
    accelerator: Any = None  # for full (gathered) state dicts under DDP/FSDP: accelerator.get_state_dict(wrapped)
    wrapped: nn.Module | None = None


def step_seed(seed: int, step: int, rank: int = 0, micro: int = 0) -> int:
    """A distinct, reproducible 63-bit seed per (seed, step, micro-batch, rank)."""
    x = (seed * 1_000_003 + step * 10_007 + micro * 101 + rank) & 0x7FFF_FFFF_FFFF_FFFF
    x ^= x >> 31
    return (x * 0x9E3779B97F4A7C15) & 0x7FFF_FFFF_FFFF_FFFF


def make_accelerator(mixed_precision: str = "no", device: str = "auto", grad_accum: int = 1, **kwargs):
    """An Accelerator for this process (bf16 only where a GPU is used; CPU stays fp32 for exact replay)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    # several stages (or tests) may run in one process: start each loop from a clean accelerate state
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return Accelerator(mixed_precision="no" if cpu else mixed_precision, cpu=cpu, **kwargs)


def list_checkpoints(run_dir: Path) -> list[Path]:
    ck = Path(run_dir) / "checkpoints"
    if not ck.exists():
        return []
    done = [p for p in ck.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and p.name[5:].isdigit()]
    return sorted(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def _move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def train_loop(
    model: nn.Module,
    loss_fn: LossFn,
    source: BatchSource,
    cfg: StageTrainConfig,
    run_dir: str | Path,
    *,
    seed: int,
    total_steps: int | None = None,
    resume: bool = True,
    accelerator=None,
    device: str = "auto",
    use_muon: bool = True,
    use_ema: bool = True,
    keep: int = 2,
    max_grad_norm: float = 1.0,
    on_step: Callable[[TrainState], None] | None = None,
    extra_params: list[nn.Parameter] | None = None,
    progress: bool = True,
) -> LoopResult:
    """Train `model` for `total_steps` (default `cfg.steps`) optimizer steps of `loss_fn` on `source`.

    Only parameters with `requires_grad` are optimised (LoRA and frozen-backbone stages set that beforehand).
    `extra_params` are trained too (e.g. a loss's own small head) and are not part of the EMA.
    """
    run_dir = Path(run_dir)
    total = int(total_steps if total_steps is not None else cfg.steps)
    accel = accelerator or make_accelerator(cfg.mixed_precision, device)
    rank, world = accel.process_index, accel.num_processes

    torch.manual_seed(seed)  # anything initialised lazily below is reproducible too
    from accelerate.utils import DistributedType

    if accel.distributed_type == DistributedType.FSDP:  # sharded params are not whole matrices: AdamW for all
        use_muon = False
    opts = build_optimizers(model, lr=cfg.lr, muon_lr=cfg.muon_lr, use_muon=use_muon)
    if extra_params:
        opts.append(torch.optim.AdamW(extra_params, lr=cfg.lr, weight_decay=0.0))
    scheds = build_schedulers(opts, warmup=cfg.warmup_steps, total=total)
    # schedulers stay unprepared: accelerate would step them once per process (scaling the schedule with the
    # world size); they are checkpointed as registered objects instead
    prepared = accel.prepare(model, *opts)
    wrapped, opts = prepared[0], list(prepared[1:])

    trainable = [p for p in accel.unwrap_model(wrapped).parameters() if p.requires_grad]
    ema = None
    if use_ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(trainable, decay=cfg.ema_decay)
    state = TrainState()
    accel.register_for_checkpointing(state, *scheds)
    if ema is not None:
        accel.register_for_checkpointing(ema)

    resumed_from = None
    if resume and (ckpts := list_checkpoints(run_dir)):
        accel.load_state(str(ckpts[-1]))
        resumed_from = state.step
        if ema is not None:  # EMAModel keeps shadow params on its own device
            ema.to(accel.device)

    k = max(1, int(cfg.grad_accum))
    if getattr(cfg, "stream", False) and cfg.loader_workers > 0 and state.step < total:
        from ..data.loader import LoaderSource

        source = LoaderSource(source, rank, world, start=state.step * k, workers=cfg.loader_workers)
    time_limit = float(getattr(cfg, "time_limit_s", 0.0) or 0.0)
    t_start, stopped = time.monotonic(), False
    bar = None
    if progress and accel.is_main_process and state.step < total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=state.step, desc=f"train {run_dir.name}", leave=False)
    wrapped.train()
    while state.step < total:
        step = state.step
        terms_sum: dict[str, float] = {}
        loss_sum = 0.0
        for micro in range(k):
            s = step_seed(seed, step, rank, micro)
            torch.manual_seed(s)  # dropout and any other global-RNG use
            gen = torch.Generator(device=accel.device).manual_seed(s)
            batch = _move_batch(source.batch(step * k + micro, rank, world), accel.device)
            sync = accel.no_sync(wrapped) if (micro < k - 1 and world > 1) else _null()
            with sync:
                with accel.autocast():
                    loss, terms = loss_fn(wrapped, batch, gen, step)
                accel.backward(loss / k)
            loss_sum += float(loss.detach()) / k
            for name, v in terms.items():
                terms_sum[name] = terms_sum.get(name, 0.0) + float(v) / k
        if max_grad_norm:
            accel.clip_grad_norm_(trainable + list(extra_params or []), max_grad_norm)
        for o in opts:
            o.step()
        for sc in scheds:
            sc.step()
        for o in opts:
            o.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(trainable)
        if world > 1:  # every rank logs the mean loss
            t = torch.tensor([loss_sum], device=accel.device)
            loss_sum = float(accel.reduce(t, reduction="mean"))
        state.step = step + 1
        state.history.append({"step": state.step, "loss": loss_sum, "lr": scheds[0].get_last_lr()[0], **terms_sum})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.4f}")
        if time_limit and state.step < total and _all_agree(accel, time.monotonic() - t_start > time_limit):
            stopped = True
        if not stopped and (state.step % max(1, cfg.checkpoint_every) == 0 or state.step == total):
            save_checkpoint(accel, run_dir, state.step, keep)
        if on_step is not None:
            on_step(state)
        if stopped:
            break
    if bar is not None:
        bar.close()
    if hasattr(source, "close"):
        source.close()

    raw = accel.unwrap_model(wrapped)
    ema_model = None
    if ema is not None:
        import copy

        ema_model = copy.deepcopy(raw)
        ema.copy_to([p for p in ema_model.parameters() if p.requires_grad])
        ema_model.eval()
    if accel.is_main_process:
        write_history(run_dir / "history.jsonl", state.history)
    return LoopResult(model=raw, ema_model=ema_model, state=state, run_dir=run_dir, resumed_from=resumed_from,
                      stopped_early=stopped, accelerator=accel, wrapped=wrapped)


def _all_agree(accel, flag: bool) -> bool:
    """True on every rank once any rank's clock has run out, so all ranks stop at the same step."""
    if accel.num_processes == 1:
        return flag
    t = torch.tensor([float(flag)], device=accel.device)
    return bool(accel.reduce(t, reduction="sum") > 0)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def save_checkpoint(accel, run_dir: Path, step: int, keep: int = 2) -> Path:
    """accelerate `save_state` into a temporary folder, renamed when complete; prune to the newest `keep`."""
    ck = Path(run_dir) / "checkpoints"
    final = ck / f"{CHECKPOINT_PREFIX}{step:06d}"
    tmp = ck / f".tmp_{CHECKPOINT_PREFIX}{step:06d}"
    if accel.is_main_process:
        ck.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accel.wait_for_everyone()
    accel.save_state(str(tmp))
    accel.wait_for_everyone()
    if accel.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accel.wait_for_everyone()
    return final


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
    os.replace(tmp, path)


def read_history(path: str | Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def smooth(values: list[float], window: int = 10) -> list[float]:
    """Trailing moving average for loss curves."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def loss_drop(history: list[dict[str, float]], key: str = "loss", frac: float = 0.1) -> dict[str, float]:
    """Mean of the first and last `frac` of a loss curve (the 'tiny already learns' check)."""
    vals = [h[key] for h in history if key in h and math.isfinite(h[key])]
    n = max(1, int(len(vals) * frac))
    first, last = sum(vals[:n]) / n, sum(vals[-n:]) / n
    return {f"{key}_first": first, f"{key}_last": last, f"{key}_ratio": last / first if first else float("nan")}
