"""Statistics of a finished (or running) study: the seed's human-evaluation numbers with bootstrap intervals.

Seed claims reproduced in form: "in 61% of test cases, at least one of three annotators was fooled" (the
fooled-at-least-one rate over cases with all their annotators' answers), "annotators correctly identified the real
video 77.8% of the time" (accuracy), the 5-point means per dimension, pairwise win rates, and agreement.
Confidence intervals are percentile bootstraps that resample cases (answers to one case are not independent).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from .agreement import fleiss_kappa, krippendorff_alpha
from .db import DIMENSIONS, Annotator, Answer, Assignment, Case, Study

ANSWER_COLUMNS = [
    "case", "case_uid", "kind", "person", "annotator", "left_system", "right_system", "real_side", "choice",
    "correct", *DIMENSIONS, "seconds", "simulated",
]


def _seconds(start, end) -> float:
    """Seconds between two UTC datetimes, whether or not SQLite handed back their time zone."""
    if start is None or end is None:
        return float("nan")
    return (end.replace(tzinfo=None) - start.replace(tzinfo=None)).total_seconds()


def answers_frame(session: Session, study: Study) -> pd.DataFrame:
    """One row per stored answer, with the case's (unshuffled) truth: who made each side, which side is real.
    `person` is the identity shown; `identity` is the Likert score of that dimension."""
    rows = session.execute(
        select(Answer, Assignment, Case, Annotator)
        .join(Assignment, Answer.assignment_id == Assignment.id)
        .join(Case, Assignment.case_id == Case.id)
        .join(Annotator, Assignment.annotator_id == Annotator.id)
        .where(Case.study_id == study.id)
        .order_by(Case.key, Annotator.name)
    ).all()
    out = []
    for ans, asg, case, ann in rows:
        out.append({
            "case": case.key, "case_uid": case.uid, "kind": case.kind, "person": case.identity,
            "annotator": ann.name, "left_system": case.left_system.name,
            "right_system": case.right_system.name if case.right_system else "",
            "real_side": case.real_side or "", "choice": ans.choice or "",
            "correct": float(ans.choice == case.real_side) if case.kind == "turing" else np.nan,
            **{d: getattr(ans, d) for d in DIMENSIONS}, "seconds": _seconds(asg.shown_at, ans.created_at),
            "simulated": ans.simulated,
        })
    return pd.DataFrame(out, columns=ANSWER_COLUMNS)


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of sum(num)/sum(den) when the (num, den) pairs — one per case — are resampled with replacement."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    if len(num) == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(num), size=(n_boot, len(num)))
    d = den[idx].sum(1)
    stats = num[idx].sum(1) / np.where(d == 0, np.nan, d)
    lo, hi = np.nanpercentile(stats, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def turing_summary(df: pd.DataFrame, per_case: int, n_boot: int, seed: int) -> dict:
    """Fooled-at-least-one rate over complete cases (all `per_case` answers in) and overall accuracy, with CIs."""
    t = df[df.kind == "turing"]
    by_case = t.groupby("case").agg(n=("correct", "size"), n_correct=("correct", "sum"))
    complete = by_case[by_case.n >= per_case]
    fooled = (complete.n_correct < complete.n).astype(float).to_numpy()
    acc_num, acc_den = by_case.n_correct.to_numpy(), by_case.n.to_numpy()
    return {
        "cases_answered": len(by_case),
        "cases_complete": len(complete),
        "answers": len(t),
        "fooled_at_least_one_rate": float(fooled.mean()) if len(fooled) else float("nan"),
        "fooled_ci": bootstrap_ratio(fooled, np.ones_like(fooled), n_boot, seed),
        "accuracy": float(acc_num.sum() / acc_den.sum()) if acc_den.sum() else float("nan"),
        "accuracy_ci": bootstrap_ratio(acc_num, acc_den, n_boot, seed + 1),
    }


def annotator_accuracy(df: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Per-annotator Turing accuracy (share of pairs where they picked the real video), with bootstrap CIs, and the
    median seconds they spent per answer (any kind)."""
    t = df[df.kind == "turing"]
    rows = []
    for i, (name, g) in enumerate(t.groupby("annotator")):
        c = g.correct.to_numpy()
        lo, hi = bootstrap_ratio(c, np.ones_like(c), n_boot, seed + i)
        rows.append({"annotator": name, "n": len(c), "accuracy": c.mean(), "ci_low": lo, "ci_high": hi})
    out = pd.DataFrame(rows, columns=["annotator", "n", "accuracy", "ci_low", "ci_high"])
    seconds = pd.to_numeric(df.seconds, errors="coerce").groupby(df.annotator).median().rename("median_seconds")
    out = out.merge(seconds, left_on="annotator", right_index=True, how="outer")
    out["n"] = out.n.fillna(0).astype(int)
    return out.sort_values("annotator").reset_index(drop=True)


def likert_means(df: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean 5-point score per (system, dimension), CI by resampling cases."""
    lk = df[df.kind == "likert"]
    rows = []
    for i, ((system, dim), g) in enumerate(
        lk.melt(id_vars=["case", "left_system"], value_vars=list(DIMENSIONS), var_name="dimension")
        .groupby(["left_system", "dimension"], sort=True)
    ):
        per_case = g.groupby("case").value.agg(["sum", "size"])
        lo, hi = bootstrap_ratio(per_case["sum"].to_numpy(), per_case["size"].to_numpy(), n_boot, seed + i)
        rows.append({"system": system, "dimension": dim, "n": len(g), "mean": g.value.mean(), "ci_low": lo,
                     "ci_high": hi})
    out = pd.DataFrame(rows, columns=["system", "dimension", "n", "mean", "ci_low", "ci_high"])
    out["dimension"] = pd.Categorical(out.dimension, categories=list(DIMENSIONS), ordered=True)
    return out.sort_values(["system", "dimension"]).reset_index(drop=True)


def win_rates(df: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """For each pair of systems (a < b by name): share of pairwise votes preferring a (a tie counts half)."""
    pw = df[df.kind == "pairwise"].copy()
    pw["winner"] = np.where(pw.choice == "left", pw.left_system, np.where(pw.choice == "right", pw.right_system, ""))
    rows = []
    systems = sorted(set(pw.left_system) | set(pw.right_system))
    for i, (a, b) in enumerate(combinations(systems, 2)):
        g = pw[((pw.left_system == a) & (pw.right_system == b)) | ((pw.left_system == b) & (pw.right_system == a))]
        if g.empty:
            continue
        score = np.where(g.winner == a, 1.0, np.where(g.winner == b, 0.0, 0.5))
        per_case = pd.DataFrame({"case": g.case.to_numpy(), "s": score}).groupby("case").s.agg(["sum", "size"])
        lo, hi = bootstrap_ratio(per_case["sum"].to_numpy(), per_case["size"].to_numpy(), n_boot, seed + i)
        rows.append({"system_a": a, "system_b": b, "n": len(g), "win_rate_a": score.mean(),
                     "ties": int((g.choice == "tie").sum()), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["system_a", "system_b", "n", "win_rate_a", "ties", "ci_low", "ci_high"])


def _choice_table(df: pd.DataFrame, kind: str, categories: tuple[str, ...], per_case: int) -> np.ndarray:
    g = df[df.kind == kind]
    counts = pd.crosstab(g.case, g.choice).reindex(columns=list(categories), fill_value=0)
    return counts[counts.sum(1) == per_case].to_numpy()


def agreement(df: pd.DataFrame, per_case: int) -> dict[str, float]:
    """Fleiss' kappa on the Turing and pairwise choices (complete cases) and Krippendorff's alpha (interval) per
    Likert dimension (missing ratings allowed)."""
    out: dict[str, float] = {}
    for kind, cats in (("turing", ("left", "right")), ("pairwise", ("left", "tie", "right"))):
        table = _choice_table(df, kind, cats, per_case)
        out[f"{kind}_fleiss_kappa"] = fleiss_kappa(table) if len(table) else float("nan")
    lk = df[df.kind == "likert"]
    for d in DIMENSIONS:
        wide = lk.pivot_table(index="annotator", columns="case", values=d, aggfunc="first")
        out[f"likert_{d}_alpha"] = krippendorff_alpha(wide.to_numpy(float), "interval") if wide.size else float("nan")
    return out


def summarize(df: pd.DataFrame, per_case: int, n_boot: int, seed: int) -> dict:
    """Everything the results page, the CLI and the notebook show: scalars + tables."""
    return {
        "turing": turing_summary(df, per_case, n_boot, seed),
        "annotators": annotator_accuracy(df, n_boot, seed + 100),
        "likert": likert_means(df, n_boot, seed + 200),
        "pairwise": win_rates(df, n_boot, seed + 300),
        "agreement": agreement(df, per_case),
        "simulated": bool(len(df)) and bool(df.simulated.any()),
        "answers": len(df),
    }
