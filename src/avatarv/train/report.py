"""Plots, sample grids, sample videos and MLflow logging for the curriculum notebooks (03–05), so the notebooks
stay a list of calls. Grids are rows of [reference | generated frames | ground-truth frames] for held-out
identities."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import tracking
from .loop import smooth


def log_history(history: list[dict[str, float]], prefix: str = "train", every: int = 1) -> None:
    """Per-step loss terms into the active MLflow run (curves in the UI)."""
    try:
        import mlflow
    except ImportError:  # pragma: no cover
        return
    if not mlflow.active_run():
        return
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(f"{prefix}/{k}", float(v), now, int(h["step"]))  # numbers only (a history may name its phase)
               for h in history[::every] for k, v in h.items()
               if k != "step" and isinstance(v, int | float) and not math.isnan(float(v))]
    client = mlflow.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


def plot_curves(histories: dict[str, list[dict[str, float]]], path: Path, keys=("loss",), title: str = "",
                vlines: list[int] = (), window: int = 10) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, hist in histories.items():
            steps = [h["step"] for h in hist if key in h]
            vals = [h[key] for h in hist if key in h]
            if not vals:
                continue
            ax.plot(steps, vals, alpha=0.25)
            ax.plot(steps, smooth(vals, window), label=name)
        for v in vlines:
            ax.axvline(v, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_image(img: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def save_videos(frames: torch.Tensor, ws, window_idx, out_dir: Path, names: list[str], fps: int = 25,
                sample_rate: int = 16000) -> list[Path]:
    """Write generated windows as mp4 (with the target window's audio when the corpus clip is at hand)."""
    from ..media import write_video

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for f, name in zip(frames, names):
        p = out_dir / f"{name}.mp4"
        write_video(p, f.numpy(), fps, None, sample_rate)
        paths.append(p)
    return paths


def grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)


@torch.no_grad()
def t2v_samples(model, vae, ws, text_bank, indices, *, steps: int, seed: int, latent_frames: int = 3):
    """Generate from held-out captions: returns (grid [GT first | generated 0,4,8 | GT 0,4,8], frames)."""
    from ..inference.conditions import WindowConditions
    from ..inference.pipeline import decode_frames
    from .sampling import sample_latents, sampler
    from .t2v import CONDITIONS

    idx = torch.as_tensor(np.array(indices))
    caps = [ws.meta.at[int(i), "caption"] for i in idx]
    text, mask = text_bank(caps)
    dev = next(model.parameters()).device
    shape = (len(idx), *ws.latents.shape[1:2], latent_frames, *ws.latents.shape[3:])
    lat, _ = sample_latents(sampler(model, vae, CONDITIONS), shape, WindowConditions(text=text.to(dev), text_mask=mask.to(dev)),
                            generator=torch.Generator(device=dev).manual_seed(seed), steps=steps)
    gen = decode_frames(vae, lat)
    gt = ws.frames[idx]
    shown = [0, gen.shape[1] // 2, gen.shape[1] - 1]
    rows = [[gt[j, 0].numpy()] + [gen[j, i].numpy() for i in shown] + [gt[j, i].numpy() for i in shown]
            for j in range(len(idx))]
    return grid(rows), gen


@torch.no_grad()
def a2v_samples(model, vae, ws, indices, *, steps: int, seed: int, guidance_audio: float = 2.0):
    """Face image (first frame) + the window's audio → video; grid [face image | generated | ground truth]."""
    from ..diffusion.guidance import Guidance
    from ..inference.conditions import WindowConditions
    from ..inference.pipeline import decode_frames
    from .a2v import CONDITIONS
    from .sampling import sample_latents, sampler

    idx = torch.as_tensor(np.array(indices))
    dev = next(model.parameters()).device
    x0 = ws.latents[idx].to(dev)
    lat, _ = sample_latents(sampler(model, vae, CONDITIONS), tuple(x0.shape), WindowConditions(cond_frame=x0[:, :, 0]),
                            generator=torch.Generator(device=dev).manual_seed(seed), steps=steps,
                            mel=ws.mel[idx].to(dev), bridge=x0[:, :, :1], guidance=Guidance(audio=guidance_audio))
    gen = decode_frames(vae, lat)
    gt = ws.frames[idx]
    shown = [0, gen.shape[1] // 2, gen.shape[1] - 1]
    rows = [[gt[j, 0].numpy()] + [gen[j, i].numpy() for i in shown] + [gt[j, i].numpy() for i in shown]
            for j in range(len(idx))]
    return grid(rows), gen


def spread_indices(ws, split: str, n: int) -> list[int]:
    """n windows of `split`, one per identity first (start-of-clip windows), for grids."""
    m = ws.meta[ws.meta["split"] == split]
    firsts = m.sort_values(["start", "identity", "scene"]).drop_duplicates("identity")
    rest = m.drop(firsts.index)
    return list(firsts.index[:n]) + list(rest.index[: max(0, n - len(firsts))])


def ablation_markdown(table: pd.DataFrame, backend: str, notes: list[str]) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values) + " |")
    return "\n".join([
        "# Personality SFT: ablations on held-out identities (cross-scene pairs)", "",
        f"Metrics backend: {backend}", "", *lines, "", *[f"- {n}" for n in notes], "",
    ])


def log_artifacts(paths: list[Path], subdir: str) -> None:
    for p in paths:
        tracking.log_artifact(p, subdir)
