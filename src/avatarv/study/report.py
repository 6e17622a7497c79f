"""Tables (CSV + markdown), plots (PNG) and metrics JSON of a study analysis, under reports/study/ by default.

Everything is labelled SIMULATED when any stored answer came from simulate.py, so a plot can never be mistaken
for a human result.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..media import atomic_path
from .db import DIMENSION_LABELS, DIMENSIONS

SIMULATED_NOTE = "SIMULATED answers (not people)"


def metrics_dict(summary: dict) -> dict:
    """Flat-ish numbers for metrics.json / MLflow."""
    t = summary["turing"]
    out = {
        "simulated": summary["simulated"],
        "answers": summary["answers"],
        "turing": {
            "cases_complete": t["cases_complete"],
            "fooled_at_least_one_rate": t["fooled_at_least_one_rate"],
            "fooled_ci_low": t["fooled_ci"][0], "fooled_ci_high": t["fooled_ci"][1],
            "accuracy": t["accuracy"], "accuracy_ci_low": t["accuracy_ci"][0], "accuracy_ci_high": t["accuracy_ci"][1],
        },
        "agreement": summary["agreement"],
        "likert": {f"{r.system}.{r.dimension}": r.mean for r in summary["likert"].itertuples()},
        "pairwise": {f"{r.system_a}_vs_{r.system_b}": r.win_rate_a for r in summary["pairwise"].itertuples()},
    }
    return json.loads(json.dumps(out, default=float).replace("NaN", "null"))


def _title(text: str, simulated: bool) -> str:
    return f"{text}\n[{SIMULATED_NOTE}]" if simulated else text


def _errbars(mean, lo, hi) -> np.ndarray:
    mean, lo, hi = (np.asarray(x, float) for x in (mean, lo, hi))
    return np.nan_to_num(np.vstack([mean - lo, hi - mean]).clip(min=0))


def plot_turing(summary: dict, path: Path) -> Path:
    t, ann = summary["turing"], summary["annotators"]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 2]})
    vals = [t["fooled_at_least_one_rate"], t["accuracy"]]
    lo, hi = [t["fooled_ci"][0], t["accuracy_ci"][0]], [t["fooled_ci"][1], t["accuracy_ci"][1]]
    a0.bar(["fooled ≥1\nof 3", "accuracy"], vals, yerr=_errbars(vals, lo, hi), capsize=4, color=["#d95f02", "#1b9e77"])
    a0.axhline(0.61, ls="--", c="#d95f02", lw=0.8, label="seed: 61 % fooled")
    a0.axhline(0.778, ls=":", c="#1b9e77", lw=0.8, label="seed: 77.8 % accuracy")
    a0.set_ylim(0, 1.05)
    a0.legend(fontsize=7, loc="lower right")
    a0.set_title(_title("Turing test", summary["simulated"]), fontsize=9)
    a1.bar(ann.annotator, ann.accuracy, yerr=_errbars(ann.accuracy, ann.ci_low, ann.ci_high), capsize=3, color="#7570b3")
    a1.axhline(0.5, ls="--", c="grey", lw=0.8)
    a1.set_ylim(0, 1.05)
    a1.set_ylabel("picked the real video")
    a1.tick_params(axis="x", rotation=45, labelsize=7)
    a1.set_title(_title("Per-annotator accuracy (95 % bootstrap CI)", summary["simulated"]), fontsize=9)
    return _save(fig, path)


def plot_likert(summary: dict, path: Path) -> Path:
    lk = summary["likert"]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    systems = sorted(lk.system.unique())
    width = 0.8 / max(len(systems), 1)
    x = np.arange(len(DIMENSIONS))
    for i, s in enumerate(systems):
        g = lk[lk.system == s].set_index("dimension").reindex(list(DIMENSIONS))
        ax.bar(x + i * width, g["mean"], width, yerr=_errbars(g["mean"], g.ci_low, g.ci_high), capsize=2, label=s)
    labels = [textwrap.fill(DIMENSION_LABELS[d].split(" (")[0], 16) for d in DIMENSIONS]
    ax.set_xticks(x + width * (len(systems) - 1) / 2, labels, fontsize=8)
    ax.set_ylim(1, 5.6)
    ax.set_ylabel("mean score (1–5)")
    ax.legend(fontsize=7, ncol=len(systems), loc="upper center")
    ax.set_title(_title("5-point ratings per dimension (95 % bootstrap CI)", summary["simulated"]), fontsize=9)
    return _save(fig, path)


def plot_pairwise(summary: dict, path: Path) -> Path:
    pw = summary["pairwise"]
    fig, ax = plt.subplots(figsize=(6, 1.8 + 0.45 * max(len(pw), 1)))
    labels = [f"{r.system_a} vs {r.system_b}" for r in pw.itertuples()]
    ax.barh(labels, pw.win_rate_a, xerr=_errbars(pw.win_rate_a, pw.ci_low, pw.ci_high), capsize=3, color="#66a61e")
    ax.axvline(0.5, ls="--", c="grey", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of votes preferring the first system (tie = ½)")
    ax.set_title(_title("Pairwise preference", summary["simulated"]), fontsize=9)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def tables_markdown(summary: dict) -> str:
    t = summary["turing"]
    lines = [f"# Study results{' — ' + SIMULATED_NOTE if summary['simulated'] else ''}", ""]
    lines += [f"Answers: {summary['answers']}. Turing cases complete: {t['cases_complete']}.", "",
              "| fooled ≥ 1 of 3 | 95 % CI | accuracy | 95 % CI |", "|---|---|---|---|",
              (f"| {t['fooled_at_least_one_rate']:.3f} | {t['fooled_ci'][0]:.3f}–{t['fooled_ci'][1]:.3f} | "
               f"{t['accuracy']:.3f} | {t['accuracy_ci'][0]:.3f}–{t['accuracy_ci'][1]:.3f} |"), ""]
    for name in ("annotators", "likert", "pairwise"):
        df: pd.DataFrame = summary[name]
        lines += [f"## {name}", "", df.to_markdown(index=False, floatfmt=".3f") if len(df) else "(none)", ""]
    lines += ["## agreement", "", "| statistic | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in summary["agreement"].items()]
    return "\n".join(lines) + "\n"


def write_report(summary: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write metrics.json, results.md, one CSV per table and three plots into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "turing_plot": plot_turing(summary, out_dir / "turing.png"),
        "likert_plot": plot_likert(summary, out_dir / "likert.png"),
        "pairwise_plot": plot_pairwise(summary, out_dir / "pairwise.png"),
    }
    for name in ("annotators", "likert", "pairwise"):
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            summary[name].to_csv(tmp, index=False, float_format="%.6g")
        paths[f"{name}_table"] = out_dir / f"{name}.csv"
    with atomic_path(out_dir / "results.md") as tmp:
        tmp.write_text(tables_markdown(summary))
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics_dict(summary), indent=2, sort_keys=True) + "\n")
    paths["results_md"], paths["metrics"] = out_dir / "results.md", out_dir / "metrics.json"
    return paths
