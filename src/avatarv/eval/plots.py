"""Figures for stages 10_eval and 11_leaderboard (matplotlib; the notebooks save and show them)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


def sync_validation(sync: dict, loss_curve: list[float]):
    """Training loss, and every confidence variant by |shift| (solid) with its swapped-audio level (dashed)."""
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    ax[0].plot(loss_curve, lw=1)
    ax[0].set(title="sync expert training loss", xlabel="step", ylabel="multi-way matching CE")
    variants = sync.get("variants") or {"conf": {"by_abs_shift": sync["conf_by_abs_shift"], "swap": sync["swap_conf"],
                                                 "monotone": sync.get("conf_monotone")}}
    for i, (name, d) in enumerate(variants.items()):
        col = f"C{i}"
        shifts = [int(k) for k in d["by_abs_shift"]]
        ranked = " (ranked)" if name == sync.get("conf_variant") else ""
        ax[1].plot(shifts, list(d["by_abs_shift"].values()), "o-", color=col,
                   label=f"{name}{ranked} {'✓' if d.get('monotone') and d.get('swap_below_synced', True) else '✗'}")
        ax[1].axhline(d["swap"], color=col, ls="--", lw=1)
    ax[1].set(title=f"confidence vs |shift| (dashed: swapped audio; offset within ±1: {sync['offset_within_1']:.0%})",
              xlabel="|audio shift| (frames)", ylabel="confidence")
    ax[1].title.set_fontsize(9)
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def identity_validation(corpus: dict, photos: dict):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = ["corpus (cross-scene)", "package photos"]
    for i, d in enumerate((corpus, photos)):
        ax.bar([i - 0.2, i + 0.2], [d["same_mean"], d["diff_mean"]], width=0.38, color=["tab:green", "tab:red"])
        ax.text(i, max(d["same_mean"], d["diff_mean"]) + 0.01, f"AUC {d['auc']:.3f}", ha="center")
    ax.set_xticks([0, 1], names)
    ax.set(ylim=(0.5, 1.05), ylabel="mean cosine (green same, red different)", title="identity metric validation")
    fig.tight_layout()
    return fig


def quality_validation(q: dict):
    """One row per validation domain (real photos, corpus renders), one panel per distortion kind."""
    domains = q.get("domains") or {"": q}
    kinds = list(q["levels"])
    fig, ax = plt.subplots(len(domains), len(kinds), figsize=(4 * len(kinds), 3.3 * len(domains)), squeeze=False)
    for row, (dom, d) in zip(ax, domains.items()):
        for a, kind in zip(row, kinds):
            for m, vals in d["scores"][kind].items():
                ok = "✓" if d["monotone"][kind][m] else "✗"
                a.plot(range(len(q["levels"][kind])), vals, "o-", label=f"{m} {ok}")
            a.set_xticks(range(len(q["levels"][kind])), [str(lv) for lv in q["levels"][kind]])
            a.set(title=f"{dom} · {kind} (✓ = worse at every step)", xlabel="level", ylabel="score (lower = better)")
            a.title.set_fontsize(9)
            a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def metric_bars(table, columns: list[str], title: str = ""):
    """One small bar chart per column, one bar per row of a leaderboard DataFrame (index = system)."""
    cols = [c for c in columns if c in table.columns and table[c].notna().any()] or columns[:1]
    ncol = min(4, len(cols))
    nrow = (len(cols) + ncol - 1) // ncol
    fig, ax = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.4 * nrow), squeeze=False)
    for a in ax.flat[len(cols):]:
        a.axis("off")
    for a, c in zip(ax.flat, cols):
        vals = table[c].astype(float) if c in table.columns else pd.Series(dtype=float)
        a.bar(range(len(vals)), vals.fillna(0).values, color="tab:blue")
        a.set_xticks(range(len(vals)), [str(i) for i in vals.index], rotation=60, ha="right", fontsize=7)
        a.set_title(c if len(c) < 48 else c[:45] + "…]", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
