"""Figures of the 01_curate notebook: the cascade funnel, score distributions against their thresholds, the
identity graph, and rejected clips with their reasons. Each returns the matplotlib figure and saves it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import CurateConfig

# score column → (threshold field of CurateConfig, 'min' = values below fail, 'max' = values above fail)
THRESHOLDS = {
    "scene_cut_score": ("scene_cut_threshold", "max"), "speech_frac": ("min_speech_frac", "min"),
    "spectral_flatness": ("max_spectral_flatness", "max"), "face_frac": ("min_face_frac", "min"),
    "multi_face_frac": ("max_multi_face_frac", "max"), "face_px": ("min_face_px", "min"),
    "yaw_abs": ("max_abs_yaw", "max"), "sharpness": ("min_sharpness", "min"), "detail_ratio": ("min_detail_ratio", "min"),
    "av_offset_pred": ("max_av_offset_frames", "abs"), "sync_confidence": ("min_sync_confidence", "min"),
    "identity_consistency": ("identity_consistency_threshold", "min"),
}


def _save(fig, path):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def funnel_chart(report: dict, path=None):
    import matplotlib.pyplot as plt

    f = report["funnel"]
    fig, ax = plt.subplots(figsize=(7, 0.42 * len(f) + 1))
    y = np.arange(len(f))[::-1]
    ax.barh(y, [s["remaining"] for s in f], color="#4C72B0")
    for yi, s in zip(y, f):
        ax.text(s["remaining"], yi, f" {s['remaining']}" + (f"  (-{s['rejected']})" if s["rejected"] else ""), va="center")
    ax.set_yticks(y, [s["stage"] for s in f])
    ax.set_xlabel("clips remaining")
    ax.set_title(f"Curation cascade: {report['n_clips']} clips in, {report['n_kept']} kept")
    ax.set_xlim(0, report["n_clips"] * 1.25)
    return _save(fig, path)


def score_distributions(clips: pd.DataFrame, cfg: CurateConfig, truth: pd.Series | None = None, path=None):
    """Histogram of each measured score with its threshold; coloured by ground truth (clean vs distractor) when
    known, else by the cascade's decision."""
    import matplotlib.pyplot as plt

    cols = [c for c in THRESHOLDS if c in clips and clips[c].notna().any()]
    n = len(cols)
    fig, axes = plt.subplots((n + 3) // 4, 4, figsize=(15, 3 * ((n + 3) // 4)))
    axes = np.atleast_1d(axes).ravel()
    if truth is not None:
        groups = {"clean (truth)": truth.values == "", "distractor (truth)": truth.values != ""}
    else:
        groups = {"kept": clips["kept"].values, "rejected": ~clips["kept"].values}
    for ax, col in zip(axes, cols):
        vals = clips[col].astype(float)
        lo, hi = np.nanmin(vals), np.nanmax(vals)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 25)
        for (name, mask), colour in zip(groups.items(), ("#55A868", "#C44E52")):
            v = vals[mask].dropna()
            if len(v):
                ax.hist(v, bins=bins, alpha=0.6, label=name, color=colour)
        field, kind = THRESHOLDS[col]
        thr = float(getattr(cfg, field))
        for t in ([-thr, thr] if kind == "abs" else [thr]):
            ax.axvline(t, color="k", ls="--", lw=1)
        ax.set_title(f"{col}  ({kind} {thr:g})", fontsize=9)
    for ax in axes[n:]:
        ax.axis("off")
    axes[0].legend(fontsize=8)
    fig.suptitle("Measured scores and their thresholds (dashed)")
    fig.tight_layout()
    return _save(fig, path)


def identity_graph_picture(clips: pd.DataFrame, edges: pd.DataFrame, truth: dict[str, str] | None = None, seed: int = 0, path=None):
    """Clips as nodes coloured by predicted identity, edges = identity links; with ground truth, nodes whose
    community's majority person differs from their own are ringed in red."""
    import matplotlib.pyplot as plt
    import networkx as nx

    members = clips[clips["identity_pred"] != ""]
    g = nx.Graph()
    g.add_nodes_from(members["clip_id"])
    g.add_weighted_edges_from(edges[["src", "dst", "similarity"]].itertuples(index=False, name=None))
    labels = sorted(members["identity_pred"].unique())
    # one small circle per community on a grid: readable edges inside, communities never overlap
    side = int(np.ceil(np.sqrt(max(len(labels), 1))))
    pos = {}
    for k, lab in enumerate(labels):
        ids = sorted(members.loc[members["identity_pred"] == lab, "clip_id"])
        cx, cy = k % side, -(k // side)
        for j, c in enumerate(ids):
            a = 2 * np.pi * j / len(ids)
            pos[c] = (cx + (0.33 * np.cos(a) if len(ids) > 1 else 0), cy + (0.33 * np.sin(a) if len(ids) > 1 else 0))
    cmap = plt.get_cmap("tab20")
    pred = dict(zip(members["clip_id"], members["identity_pred"]))
    colours = [cmap(labels.index(pred[n]) % 20) for n in g.nodes]
    wrong = []
    if truth:
        for _, grp in members.groupby("identity_pred"):
            people = [truth.get(c, "") for c in grp["clip_id"]]
            major = max(set(people), key=people.count)
            wrong += [c for c, p in zip(grp["clip_id"], people) if p != major]
    fig, ax = plt.subplots(figsize=(8, 8))
    nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.3)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=60,
                           edgecolors=["red" if n in wrong else "none" for n in g.nodes], linewidths=2)
    ax.set_title(f"Identity graph: {len(g)} clips, {g.number_of_edges()} edges, {len(labels)} communities"
                 + (f", {len(wrong)} misplaced" if truth else ""))
    ax.axis("off")
    return _save(fig, path)


def rejected_examples(clips: pd.DataFrame, corpus_dir: str | Path, per_stage: int = 1, max_panels: int = 12, path=None):
    """A middle frame of rejected clips (one per stage and reason kind), titled with stage and reason."""
    import matplotlib.pyplot as plt

    from ..media import read_video

    rej = clips[~clips["kept"]]
    picks = rej.groupby("stage", sort=False).head(per_stage).head(max_panels)
    n = max(len(picks), 1)
    cols = min(4, n)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(3.6 * cols, 4.6 * ((n + cols - 1) // cols)))
    axes = np.atleast_1d(axes).ravel()
    for ax, (_, r) in zip(axes, picks.iterrows()):
        try:
            frames = read_video(Path(corpus_dir) / r["path"]).frames
            ax.imshow(frames[len(frames) // 2])
        except Exception as e:  # noqa: BLE001 - unreadable clips are exactly what some panels show
            ax.text(0.5, 0.5, f"(unreadable)\n{type(e).__name__}", ha="center", va="center")
        ax.set_title(f"{r['clip_id']} [{r['stage']}]\n" + "\n".join(textwrap.wrap(r["reason"], 40)[:3]), fontsize=8)
        ax.axis("off")
    for ax in axes[len(picks):]:
        ax.axis("off")
    fig.suptitle("Rejected clips and why")
    fig.tight_layout()
    return _save(fig, path)


def sync_example(clips: pd.DataFrame, corpus_dir: str | Path, clip_ids: list[str], path=None):
    """Mouth opening vs audio envelope for a few clips: what the AV-offset estimate cross-correlates."""
    import matplotlib.pyplot as plt

    from ..media import read_video
    from .sync_offset import audio_envelope

    fig, axes = plt.subplots(len(clip_ids), 1, figsize=(9, 2.2 * len(clip_ids)), squeeze=False)
    rows = clips.set_index("clip_id")
    for ax, cid in zip(axes[:, 0], clip_ids):
        r = rows.loc[cid]
        mouth = np.asarray(r["mouth_series"], float)
        v = read_video(Path(corpus_dir) / r["path"])
        env = audio_envelope(v.audio, v.sample_rate, v.fps, len(mouth))
        ax.plot(mouth / np.nanmax(mouth), label="mouth opening")
        ax.plot(env / max(env.max(), 1e-9), label="audio envelope", alpha=0.7)
        ax.set_title(f"{cid}: predicted offset {r['av_offset_pred']:+.0f} frames, confidence {r['sync_confidence']:.2f}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    return _save(fig, path)


def metrics_summary(report: dict) -> dict:
    """The flat numbers of reports/01_curate/metrics.json (DVC metrics + MLflow)."""
    out = {k: report[k] for k in ("n_clips", "n_kept", "n_pairs", "n_identities_pred", "n_edges", "clips_per_min", "seconds")}
    out["has_ground_truth"] = bool(report["has_ground_truth"])
    s = report.get("scores")
    if s:
        out.update({k: s[k] for k in ("min_kind_recall", "clean_false_rejection", "av_offset_accuracy",
                                      "av_offset_accuracy_on_offset_clips", "pair_precision", "pair_recall_clean")})
        out.update({f"identity_{k}": v for k, v in s["identity"].items()})
        out.update({f"recall_{k}": v["recall"] for k, v in s["per_kind"].items()})
        out.update({f"reason_recall_{k}": v["reason_recall"] for k, v in s["per_kind"].items()})
    return json.loads(json.dumps(out, default=float))
