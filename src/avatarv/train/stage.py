"""What every curriculum stage does around the shared loop: locate inputs, load the VAE and the window cache,
initialise the generator from the previous stage, measure a held-out validation loss before and after, save the
EMA generator to runs/<stage>/final, and write the loss history. The stage modules (t2v, a2v, sft, lora) only say
which data, which conditions and which losses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, StageTrainConfig
from ..data.datasets import WindowSet, build_windows, load_training_clips, window_batch
from ..errors import InputError
from ..paths import CORPUS, CURATED, RUNS
from .generator import AvatarGenerator
from .objectives import FlowSpec, flow_loss


@dataclass
class StagePaths:
    corpus: Path = CORPUS
    curated: Path = CURATED
    vae: Path = RUNS / "vae"
    runs: Path = RUNS

    def run_dir(self, stage: str) -> Path:
        return self.runs / stage

    def final(self, stage: str) -> Path:
        return self.runs / stage / "final"


@dataclass
class StageOutcome:
    stage: str
    run_dir: Path
    final_dir: Path
    history: list[dict[str, float]]
    metrics: dict[str, Any] = field(default_factory=dict)


def pick_device(cfg: Config) -> torch.device:
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def load_stage_vae(paths: StagePaths, device: torch.device | str = "cpu"):
    from ..models.vae import load_vae

    vae_dir = paths.vae / "final" if (paths.vae / "final" / "config.json").exists() else paths.vae
    return load_vae(vae_dir, device)


def stage_windows(cfg: Config, st: StageTrainConfig, paths: StagePaths, vae, image_sizes=(), progress=True) -> WindowSet:
    """The window cache at the stage's size/frames (streamed from disk when `st.stream`). Always asks for the T2V curriculum's small image sizes too, so
    every stage (and notebook cell) with the same size/frames shares ONE cache file instead of re-encoding."""
    clips = load_training_clips(paths.corpus, paths.curated)
    t2v_images = {int(p.get("size", st.size)) for p in cfg.train.t2v.phases if int(p["frames"]) == 1}
    image_sizes = sorted(set(image_sizes) | {s for s in t2v_images if s != st.size})
    if st.stream:  # the same windows, memory-mapped from files on disk (data/window_store.py)
        from ..data.window_store import stream_windows

        return stream_windows(clips, vae, size=st.size, frames=st.frames, image_sizes=tuple(image_sizes),
                              cache_dir=paths.runs / "cache", progress=progress)
    return build_windows(clips, vae, size=st.size, frames=st.frames, image_sizes=tuple(image_sizes),
                         cache_dir=paths.runs / "cache", progress=progress)


def init_generator(cfg: Config, vae_config, init_from: Path | None) -> AvatarGenerator:
    """The previous stage's final generator if it exists, else fresh weights from params.yaml `dit` (seeded), shaped
    for the trained VAE (`vae_config`: its latent channels and temporal downsampling, not params.yaml's)."""
    if init_from is not None and (init_from / "transformer" / "config.json").exists():
        return AvatarGenerator.load(init_from)
    torch.manual_seed(cfg.seed)
    return AvatarGenerator.from_config(cfg, vae_config.latent_channels, vae_config.temporal_downsample)


def condition_prior_variance(ws: WindowSet, indices) -> float:
    """Per-element mean squared difference between the windows' latents and their clip's start frame (the frame
    condition): the spread s² of the condition prior (models/dit.py prior_velocity)."""
    idx = torch.as_tensor(np.asarray(indices))
    start = ws.latents[torch.as_tensor(ws.clip_start[idx.numpy()])][:, :, :1].float()
    return float(((ws.latents[idx].float() - start) ** 2).mean())


def ensure_condition_prior(cfg: Config, model: AvatarGenerator, ws: WindowSet, indices) -> None:
    """Turn the condition prior on (params.yaml conditions.condition_prior) for a frame-conditioned generator that lacks it,
    with s² measured on the training windows; a generator that has it keeps its value. Stage 3 switches it on, on top
    of the stage-2 model as trained: switched on at stage 2 (with the velocity head restarted at zero or not) the
    tiny A2V ended at a worse held-out flow (0.324 / 0.259 vs 0.188) and the SFT built on it synced and kept identity
    worse than one that got the prior at stage 3 (lip sync 0.121 vs 0.172, reports/condition_prior.md)."""
    tr = model.transformer
    if cfg.conditions.condition_prior and tr.config.frame_condition and tr.config.condition_prior_var is None:
        model.transformer = tr.with_config(condition_prior_var=round(condition_prior_variance(ws, indices), 6))


@torch.no_grad()
def validation_loss(model: AvatarGenerator, ws: WindowSet, indices, spec: FlowSpec, *, seed: int, batch_size: int = 8,
                    latent_frames: int | None = None, text_lookup=None, pair_items=None, repeats: int = 2,
                    td: int = 4, max_items: int = 48) -> float:
    """Mean flow term on fixed windows with fixed noise and times (the same draw for every model compared); at
    most `max_items` windows/pairs, evenly spread over the list (which is ordered by identity)."""
    model.eval()
    dev = next(model.parameters()).device
    eval_spec = FlowSpec(**{**spec.__dict__, "cond_dropout": 0.0, "bridge_prob": 0.0, "losses": {}})
    total, n = 0.0, 0
    items = np.asarray(indices) if pair_items is None else np.asarray(pair_items)
    if len(items) > max_items:
        items = items[np.linspace(0, len(items) - 1, max_items).round().astype(int)]
    for r in range(repeats):
        for i in range(0, len(items), batch_size):
            sel = items[i : i + batch_size]
            if pair_items is None:
                b = window_batch(ws, sel, latent_frames=latent_frames, td=td)
            else:
                from ..data.datasets import pair_batch

                b = pair_batch(ws, sel[:, 0], sel[:, 1], td=td)
            b = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in b.items()}
            gen = torch.Generator(device=dev).manual_seed(seed + 7919 * r + i)
            _, terms = flow_loss(model, b, gen, eval_spec, text_lookup=text_lookup, td=td)
            total += terms["flow"] * len(sel)
            n += len(sel)
    model.train()
    return total / max(n, 1)


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=float))
    return path


def require(path: Path, what: str) -> Path:
    if not Path(path).exists():
        raise InputError(path, f"{what} not found")
    return path


def paths_from_args(args) -> StagePaths:
    """StagePaths from the `avatarv train` options (--corpus, --curated, --runs). On the tiny (CPU) profile the CLI
    trains with one torch thread: two OpenMP threads stall on a busy 2-core machine (02_vae measured 9 s vs 0.8 s
    per step)."""
    if getattr(args, "profile", None) in (None, "tiny") and not torch.cuda.is_available():
        torch.set_num_threads(1)
    runs = Path(getattr(args, "runs", None) or RUNS)
    paths = StagePaths(runs=runs, vae=runs / "vae")
    if getattr(args, "corpus", None):
        paths.corpus = Path(args.corpus)
    if getattr(args, "curated", None):
        paths.curated = Path(args.curated)
    return paths


def print_outcome(out: StageOutcome) -> int:
    print(json.dumps({"stage": out.stage, "final": str(out.final_dir), **out.metrics}, default=str))
    return 0


SYNC_JUDGE_SEED_OFFSET = 17  # not stage 10_eval's seed: the generator must not be graded by its own teacher


SYNC_GRADER_SEED_OFFSET = 29  # a third expert that grades the stages' samples without having taught them


def load_sync_judge(cfg: Config, paths: StagePaths, progress: bool = True, name: str = "sync_judge",
                    seed_offset: int = SYNC_JUDGE_SEED_OFFSET, device: torch.device | str = "cpu"):
    """The frozen sync expert behind the `sync` loss (objectives.SyncLoss): trained once on the training
    identities' clean clips (train/sync_expert, another seed than 10_eval's judge) into runs/a2v/<name>,
    reused by SFT. `name="sync_grader"` gives the stages' own grader (another seed again)."""
    import pandas as pd

    from ..models.sync_expert import load_sync_expert
    from .sync_expert import train_expert

    out = paths.run_dir("a2v") / name
    if not (out / "config.json").exists():
        manifest = pd.read_parquet(Path(paths.corpus) / "manifest.parquet")
        train_expert(cfg, Path(paths.corpus), manifest, out, progress=progress, seed=cfg.seed + seed_offset)
    judge = load_sync_expert(out).to(device)  # on the generator's device: SyncLoss feeds it decoded frames there
    judge.requires_grad_(False)
    return judge
