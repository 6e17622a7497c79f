"""Stage 08: train and measure the reference-aware super-resolution refiner (models/refiner.py).

Data (data/hires.py): one clean clip per (identity, scene) re-rendered at the output size; the input is the base-like
low-res video (area-downsampled, VAE round trip) with random blur and noise on top (`degrade`); the reference is a
high-res frame of the same person from another scene (cross-scene, so copying the reference is never the answer);
`reference_dropout` of the samples see no reference. Loss: L1 on the frame plus `face_weight` × L1 in the face box.
Training runs through the shared loop (train/loop.py: checkpoints, exact resume, EMA).

Variants (same data, steps and seed, for the comparison table): the refiner (local window ±w, reference), and
`refiner.variants` of `no_reference` (no reference path at all) and `full_temporal` (every frame sees every frame).
The refiner is saved to runs/refiner/model and, attached to stage 3's pipeline, to runs/refiner/final: a complete
pipeline whose output is refined, which stage 10 scores as the leaderboard's `refiner` row.

`evaluate`: held-out identities only, face region: PSNR / SSIM to the ground truth, sharpness (Laplacian variance,
and its ratio to the ground truth's), identity similarity to the ground-truth face (dlib descriptor), temporal
flicker (mean squared frame difference, as a ratio to the ground truth's, and the error of the frame differences),
and CPU milliseconds per output frame, against bicubic upsampling.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config, RefinerConfig, StageTrainConfig
from ..data.hires import HiresSet, build_hires_set, hires_path
from ..models.refiner import RefinerModel, load_refiner, to_frames
from .loop import loss_drop, make_accelerator, step_seed, train_loop
from .stage import StageOutcome, StagePaths, load_stage_vae, pick_device

STAGE = "refiner"
MAIN = "refiner"


# ------------------------------------------------------------------------------------------------ data
def to_video(u8: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 → (B, 3, T, H, W) float in [−1, 1]."""
    return u8.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample Gaussian blur of (B, C, T, H, W) with std `sigma` (B,) pixels (0 = unchanged), 5-tap separable."""
    B, C, T, H, W = x.shape
    r = torch.arange(-2, 3, dtype=x.dtype)
    s = sigma.clamp_min(1e-3).to(x.dtype)[:, None]
    k = torch.exp(-0.5 * (r[None] / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, 5); sigma → 0 gives a delta
    y = x.permute(0, 2, 1, 3, 4).reshape(1, B * T * C, H, W)
    kk = k.repeat_interleave(T * C, 0)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kk[:, None, None, :], groups=B * T * C)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kk[:, None, :, None], groups=B * T * C)
    return y.view(B, T, C, H, W).permute(0, 2, 1, 3, 4)


def degrade(low: torch.Tensor, gen: torch.Generator, blur: list[float], noise: list[float]) -> torch.Tensor:
    """Random blur and noise on the base-like input (B, 3, T, h, w), one draw per sample (constant over time, like a
    generator's softness)."""
    B = low.shape[0]
    sigma = blur[0] + (blur[1] - blur[0]) * torch.rand(B, generator=gen)
    std = noise[0] + (noise[1] - noise[0]) * torch.rand(B, generator=gen)
    y = gaussian_blur(low, sigma)
    return (y + std.view(B, 1, 1, 1, 1) * torch.randn(y.shape, generator=gen)).clamp(-1, 1)


def face_mask(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(B, T, 4) normalised boxes → (B, 1, T, size, size) float mask."""
    g = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    m = (g[None, None, None, :] >= x0) & (g[None, None, None, :] <= x1) & (g[None, None, :, None] >= y0) & \
        (g[None, None, :, None] <= y1)
    return m.float()[:, None]


class RefinerBatches:
    """Deterministic micro-batches (train/loop.py BatchSource): clip, start frame, degradation and reference-dropout
    draws are functions of (seed, index, rank)."""

    def __init__(self, hs: HiresSet, indices, rc: RefinerConfig, seed: int):
        self.hs, self.items, self.r, self.seed = hs, np.asarray(indices), rc, seed

    def batch(self, index: int, rank: int, world: int) -> dict[str, Any]:
        r, hs = self.r, self.hs
        gen = torch.Generator().manual_seed(step_seed(self.seed, index, rank))
        pick = self.items[torch.randint(len(self.items), (r.batch_size,), generator=gen).numpy()]
        T = min(r.frames, hs.frames.shape[1])
        start = torch.randint(hs.frames.shape[1] - T + 1, (r.batch_size,), generator=gen).tolist()
        high = torch.stack([hs.frames[i, s : s + T] for i, s in zip(pick, start)])
        low = torch.stack([hs.low[i, s : s + T] for i, s in zip(pick, start)])
        refs = [hs.reference_of(int(i)) for i in pick]
        ref_t = torch.randint(hs.frames.shape[1], (r.batch_size,), generator=gen).tolist()
        ref = torch.stack([hs.frames[j, t : t + 1] for j, t in zip(refs, ref_t)])
        n_ref = max(1, r.reference_frames)
        if n_ref > 1:  # more reference frames: spread over the reference clip
            ref = torch.stack([hs.frames[j, np.linspace(0, hs.frames.shape[1] - 1, n_ref).round().astype(int)]
                               for j in refs])
        keep = torch.rand(r.batch_size, generator=gen) >= r.reference_dropout
        return {"low": degrade(to_video(low), gen, r.blur_sigma, r.noise_std), "high": to_video(high),
                "reference": to_video(ref), "reference_keep": keep,
                "face": torch.stack([hs.face_box[i, s : s + T] for i, s in zip(pick, start)])}


def refiner_loss(model, batch: dict[str, Any], gen: torch.Generator, step: int, face_weight: float = 2.0):
    m = getattr(model, "module", model)
    cache = m.reference_pass(batch["reference"]) if m.config.reference else None
    pred = model(batch["low"], cache, batch["reference_keep"] if cache is not None else None)
    err = (pred - batch["high"]).abs()
    mask = face_mask(batch["face"].cpu(), err.shape[-1]).to(err.device)
    l1 = err.mean()
    face = (err * mask).sum() / (mask.sum() * 3).clamp_min(1.0)
    return l1 + face_weight * face, {"l1": float(l1.detach()), "face_l1": float(face.detach())}


# ------------------------------------------------------------------------------------------------ variants
def variant_config(cfg: Config, name: str) -> dict:
    """RefinerModel kwargs of a variant."""
    r = cfg.refiner
    kw = dict(factor=r.factor, in_size=list(r.in_size), patch=r.patch, hidden=r.hidden, layers=r.layers, heads=r.heads,
              mlp_ratio=r.mlp_ratio, window=r.window, reference=True)
    if name == "no_reference":
        kw["reference"] = False
    elif name == "full_temporal":
        kw["window"] = 0
    elif name != MAIN:
        raise ValueError(f"params.yaml refiner.variants: unknown variant {name!r} (known: no_reference, full_temporal)")
    return kw


def variant_dir(paths: StagePaths, name: str) -> Path:
    return paths.run_dir(STAGE) if name == MAIN else paths.run_dir(STAGE) / "ablations" / name


def model_dir(paths: StagePaths, name: str = MAIN) -> Path:
    """Where a variant's trained RefinerModel lives (the main one is what `avatarv generate` loads)."""
    return variant_dir(paths, name) / "model"


def save_pretrained_atomically(obj, path: Path) -> Path:
    """`obj.save_pretrained` beside `path`, then renamed onto it (a failed save never leaves half a model)."""
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    obj.save_pretrained(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def train_variant(cfg: Config, paths: StagePaths, hs: HiresSet, name: str = MAIN, *, steps: int | None = None,
                  resume: bool = True, progress: bool = True) -> StageOutcome:
    r = cfg.refiner
    device = pick_device(cfg)
    torch.manual_seed(cfg.seed + 8)
    model = RefinerModel(**variant_config(cfg, name)).to(device)
    st = StageTrainConfig(steps=steps or r.steps, batch_size=r.batch_size, lr=r.lr, warmup_steps=r.warmup_steps,
                          checkpoint_every=r.checkpoint_every, mixed_precision=r.mixed_precision)
    source = RefinerBatches(hs, hs.indices("train"), r, seed=cfg.seed + 8)
    run_dir = variant_dir(paths, name)

    def loss_fn(m, batch, gen, step):
        return refiner_loss(m, batch, gen, step, r.face_weight)

    t0 = time.time()
    res = train_loop(model, loss_fn, source, st, run_dir, seed=cfg.seed + 8, resume=resume, use_muon=False,
                     accelerator=make_accelerator(r.mixed_precision, str(device)), progress=progress)
    trained = (res.ema_model or res.model).eval()
    save_pretrained_atomically(trained, model_dir(paths, name))
    return StageOutcome(f"refiner:{name}" if name != MAIN else MAIN, run_dir, model_dir(paths, name),
                        res.state.history, {"steps": st.steps, "resumed_from": res.resumed_from,
                                            "train_seconds": round(time.time() - t0, 1), **loss_drop(res.state.history)})


def _variant_worker(cfg: Config, paths: StagePaths, hs_path: Path, name: str, resume: bool) -> StageOutcome:
    torch.set_num_threads(1)
    return train_variant(cfg, paths, HiresSet.load(hs_path), name, resume=resume, progress=False)


def hires_cache(paths: StagePaths) -> Path:
    return paths.runs / "cache"


def train_all(cfg: Config, paths: StagePaths, hs: HiresSet, *, resume: bool = True, progress: bool = True,
              workers: int = 2, hs_path: Path | None = None) -> dict[str, StageOutcome]:
    """The refiner and its comparison variants; with `workers` > 1 they train in that many one-thread processes
    (each still a deterministic function of its config) that load the set from `hs_path` (saved there if absent)."""
    names = [MAIN, *cfg.refiner.variants]
    for n in names:
        variant_config(cfg, n)  # unknown names fail before any training
    if workers <= 1 or len(names) <= 1:
        return {n: train_variant(cfg, paths, hs, n, resume=resume, progress=progress) for n in names}
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if hs_path is None or not Path(hs_path).exists():
        hs_path = hires_cache(paths) / "refiner_train_set.pt"
        hs.save(hs_path)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {n: pool.submit(_variant_worker, cfg, paths, hs_path, n, resume) for n in names}
        return {n: f.result() for n, f in futures.items()}


def attach_to_pipeline(paths: StagePaths, refiner: RefinerModel, base: Path | None = None) -> Path | None:
    """runs/refiner/final: stage 3's saved pipeline (or `base`) with the refiner as its `refiner` component, so the
    pipeline's output is refined (the leaderboard's `refiner` row). None when there is no base pipeline."""
    from ..inference.pipeline import is_saved_pipeline, load_pipeline

    base = base or paths.final("sft")
    if not is_saved_pipeline(base):
        return None
    pipe = load_pipeline(base)
    pipe.register_modules(refiner=refiner)
    return save_pretrained_atomically(pipe, paths.final(STAGE))


def run(cfg: Config, paths: StagePaths | None = None, *, resume: bool = True, progress: bool = True,
        workers: int = 2) -> dict:
    """Render the data, train every variant, save the pipeline with the refiner; returns {"hires", "outcomes",
    "final"} for the notebook."""
    paths = paths or StagePaths()
    vae = None
    try:
        vae = load_stage_vae(paths, "cpu")
    except (OSError, ValueError):  # no trained VAE: the input is the plain downsampled frame
        vae = None
    hs = build_hires_set(cfg, vae=vae, cache_dir=hires_cache(paths), progress=progress)
    outcomes = train_all(cfg, paths, hs, resume=resume, progress=progress, workers=workers,
                         hs_path=hires_path(cfg, hires_cache(paths), vae))
    final = attach_to_pipeline(paths, load_refiner(model_dir(paths)))
    return {"hires": hs, "outcomes": outcomes, "final": final}


# ------------------------------------------------------------------------------------------------ measurement
def face_region(boxes: np.ndarray, size: int, margin: float = 0.1) -> tuple[int, int, int, int]:
    """One pixel box (x0, y0, x1, y1) covering every frame's face box of a clip, with a margin."""
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    lo, hi = np.clip([x0 - mx, y0 - my], 0.0, 1.0), np.clip([x1 + mx, y1 + my], 0.0, 1.0)
    return tuple(int(round(float(v) * size)) for v in (*lo, *hi))


def laplacian_var(crop: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(crop.astype(np.float32).mean(-1), cv2.CV_32F).var())


def flicker(frames: np.ndarray) -> float:
    """Frame-difference energy: mean squared difference of consecutive frames (grey levels²)."""
    f = frames.astype(np.float32)
    return float(((f[1:] - f[:-1]) ** 2).mean())


def bicubic(low: np.ndarray, factor: int) -> np.ndarray:
    x = torch.from_numpy(low).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)
    return y.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def refine_clip(model: RefinerModel, low_u8: np.ndarray, ref_u8: np.ndarray | None, window: int | None = None
                ) -> np.ndarray:
    """(T, h, w, 3) → (T, H, W, 3) uint8 with a high-res reference (Tr, H, W, 3) or None (no reference)."""
    cache = None
    if ref_u8 is not None and model.config.reference:
        cache = model.encode_reference(to_video(torch.from_numpy(ref_u8)[None]))
    return to_frames(model(to_video(torch.from_numpy(low_u8)[None]), cache, window=window))


def score_clip(out: np.ndarray, truth: np.ndarray, box: tuple[int, int, int, int], id_frames: list[int]) -> dict:
    from ..faces.box import Box
    from ..faces.embed import embed_faces
    from .vae import _psnr, _ssim

    x0, y0, x1, y1 = box
    o, g = out[:, y0:y1, x0:x1], truth[:, y0:y1, x0:x1]
    row = {"psnr": float(np.mean([_psnr(g[t], o[t]) for t in range(len(o))])),
           "ssim": float(np.mean([_ssim(g[t], o[t]) for t in range(len(o))])),
           "sharpness": float(np.mean([laplacian_var(c) for c in o])),
           "sharpness_gt": float(np.mean([laplacian_var(c) for c in g])),
           "flicker": flicker(o), "flicker_gt": flicker(g),
           "flicker_error": float((((o[1:].astype(np.float32) - o[:-1]) - (g[1:].astype(np.float32) - g[:-1])) ** 2)
                                  .mean())}
    b = [Box(x0, y0, x1, y1)] * len(id_frames)
    try:
        e_o = embed_faces([out[t] for t in id_frames], b)
        e_g = embed_faces([truth[t] for t in id_frames], b)
        row["id_sim"] = float(np.mean(np.sum(e_o * e_g, 1)))
    except Exception:  # noqa: BLE001 - no dlib shape on a frame: the identity column stays empty
        row["id_sim"] = float("nan")
    return row


def evaluate(cfg: Config, paths: StagePaths, hs: HiresSet, *, id_frames: int = 4) -> tuple[list[dict], list[dict]]:
    """Per-clip rows and the per-system means on the held-out identities (see the module docstring). Systems:
    bicubic, the refiner, the refiner with its reference ablated at inference, and each trained variant."""
    r = cfg.refiner
    models = {MAIN: load_refiner(model_dir(paths, MAIN))}
    for n in r.variants:
        if (model_dir(paths, n) / "config.json").exists():
            models[f"refiner:{n}"] = load_refiner(model_dir(paths, n))
    T = min(r.eval_frames, hs.frames.shape[1])
    size = hs.frames.shape[2]
    rows = []
    for i in hs.indices("holdout"):
        truth = hs.frames[i, :T].numpy()
        low = hs.low[i, :T].numpy()
        ref = hs.frames[hs.reference_of(int(i)), :1].numpy()
        box = face_region(hs.face_box[i, :T].numpy(), size)
        pick = list(np.linspace(0, T - 1, id_frames).round().astype(int))
        systems = {"bicubic": lambda low=low: bicubic(low, r.factor)}
        for name, m in models.items():
            systems[name] = (lambda m=m, low=low, ref=ref: refine_clip(m, low, ref))
            if name == MAIN:
                systems["refiner:reference_ablated"] = (lambda m=m, low=low: refine_clip(m, low, None))
        for name, fn in systems.items():
            t0 = time.perf_counter()
            out = fn()
            ms = (time.perf_counter() - t0) * 1000 / T
            rows.append({"system": name, "clip_id": hs.meta[i]["clip_id"], "ms_per_frame": ms,
                         **score_clip(out, truth, box, pick)})
    import pandas as pd

    df = pd.DataFrame(rows)
    summary = df.drop(columns=["clip_id"]).groupby("system", sort=False).mean().reset_index()
    summary["sharpness_ratio"] = summary["sharpness"] / summary["sharpness_gt"]
    summary["flicker_ratio"] = summary["flicker"] / summary["flicker_gt"]
    return rows, summary.to_dict(orient="records")


@torch.no_grad()
def attention_speed(cfg: Config, frames=(4, 8, 16), repeats: int = 2) -> list[dict]:
    """ms per output frame of the refiner's forward pass, local window vs full temporal attention, on videos of
    growing length (random weights and input: the speed depends on shapes only)."""
    torch.manual_seed(0)
    m = RefinerModel(**variant_config(cfg, MAIN)).eval()
    h, w = (int(s) for s in cfg.refiner.in_size)
    cache = m.encode_reference(torch.zeros(1, 3, 1, h * cfg.refiner.factor, w * cfg.refiner.factor))
    rows = []
    for T in frames:
        x = torch.randn(1, 3, T, h, w)
        for name, window in (("window", cfg.refiner.window), ("full", 0)):
            m(x, cache, window=window)  # warm-up
            t0 = time.perf_counter()
            for _ in range(repeats):
                m(x, cache, window=window)
            rows.append({"frames": T, "attention": name, "ms_per_frame": (time.perf_counter() - t0) * 1000 / (repeats * T)})
    return rows


def comparison_images(cfg: Config, paths: StagePaths, hs: HiresSet, n_clips: int = 3, tile: int = 192) -> np.ndarray:
    """Face crops of held-out clips, one row per clip: base-like input (nearest-upsampled), bicubic, refiner without
    reference, refiner, ground truth (each crop shown at `tile` × `tile`, nearest-neighbour)."""
    import cv2

    r = cfg.refiner
    main = load_refiner(model_dir(paths, MAIN))
    noref = load_refiner(model_dir(paths, "no_reference")) if (model_dir(paths, "no_reference") / "config.json").exists() else None
    rows = []
    for i in hs.indices("holdout")[:: max(1, len(hs.indices("holdout")) // n_clips)][:n_clips]:
        low = hs.low[i, :3].numpy()
        truth = hs.frames[i, :3].numpy()
        ref = hs.frames[hs.reference_of(int(i)), :1].numpy()
        x0, y0, x1, y1 = face_region(hs.face_box[i, :3].numpy(), truth.shape[1])
        outs = [np.repeat(np.repeat(low, r.factor, 1), r.factor, 2), bicubic(low, r.factor)]
        outs += [refine_clip(noref, low, None)] if noref is not None else []
        outs += [refine_clip(main, low, ref), truth]
        rows.append(np.concatenate([cv2.resize(np.ascontiguousarray(o[1, y0:y1, x0:x1]), (tile, tile),
                                               interpolation=cv2.INTER_NEAREST) for o in outs], 1))
    return np.concatenate(rows, 0)


def write_table(path: Path, summary: list[dict], speed: list[dict], cfg: Config) -> Path:
    """reports/08_refiner/comparison.md: the summary table and the speed table."""
    import pandas as pd

    r = cfg.refiner
    lines = [f"# Refiner ×{r.factor} ({r.in_size[0]}→{r.in_size[0] * r.factor} px) on held-out identities, face region",
             "", f"Window ±{r.window} frames, {r.steps} training steps for every trained system.", "",
             pd.DataFrame(summary).round(4).to_markdown(index=False), "",
             "## Forward time per output frame (CPU, one thread), local window vs full temporal attention", "",
             pd.DataFrame(speed).pivot(index="frames", columns="attention", values="ms_per_frame").round(1)
             .to_markdown(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def main(args) -> int:
    """`avatarv train --stage refiner [--no-resume --runs]`."""
    from ..config import load_config
    from .stage import paths_from_args

    cfg = load_config(args.profile)
    out = run(cfg, paths_from_args(args), resume=not args.no_resume)
    print(json.dumps({"stage": STAGE, "final": str(out["final"]),
                      **{n: o.metrics for n, o in out["outcomes"].items()}}, default=str))
    return 0


