"""Inter-annotator agreement: Fleiss' kappa and Krippendorff's alpha (seed: "trained human annotators").

Agreement says how much the study's means can be trusted: annotators who agree only by chance give kappa/alpha
near 0, identical raters give 1. Written from the published formulas (Fleiss 1971; Krippendorff 2011,
"Computing Krippendorff's Alpha-Reliability") so that the tests can check them on the papers' own examples.
"""

from __future__ import annotations

import numpy as np


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an (items, categories) table of how many raters put each item in each category.
    Every item must have the same number of raters (≥ 2). NaN when agreement by chance is already perfect."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or len(counts) == 0:
        raise ValueError("fleiss_kappa: need a non-empty (items, categories) table")
    n = counts.sum(1)
    if not np.all(n == n[0]) or n[0] < 2:
        raise ValueError("fleiss_kappa: every item needs the same number (≥ 2) of ratings")
    n = n[0]
    p_j = counts.sum(0) / counts.sum()
    p_i = ((counts**2).sum(1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    return float("nan") if np.isclose(p_e, 1.0) else float((p_bar - p_e) / (1 - p_e))


def krippendorff_alpha(data: np.ndarray, level: str = "interval") -> float:
    """Krippendorff's alpha for a (raters, units) array with NaN for missing ratings.
    level: nominal | ordinal | interval. Units with fewer than two ratings are not pairable and are dropped."""
    data = np.asarray(data, dtype=float)
    if data.ndim != 2:
        raise ValueError("krippendorff_alpha: need a (raters, units) array")
    values = np.unique(data[~np.isnan(data)])
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))  # coincidence matrix
    for unit in data.T:
        vals = unit[~np.isnan(unit)]
        m = len(vals)
        if m < 2:
            continue
        c = np.zeros(len(values))
        for v in vals:
            c[index[v]] += 1
        o += (np.outer(c, c) - np.diag(c)) / (m - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    if n < 2 or len(values) < 2:
        return float("nan")
    delta = _delta(values, n_c, level)
    d_o = (o * delta).sum() / n
    d_e = (np.outer(n_c, n_c) * delta).sum() / (n * (n - 1))
    return float(1 - d_o / d_e)


def _delta(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    if level == "interval":
        return np.subtract.outer(values, values) ** 2
    if level == "ordinal":
        cum = np.cumsum(n_c)
        d = np.zeros((len(values), len(values)))
        for c in range(len(values)):
            for k in range(len(values)):
                lo, hi = min(c, k), max(c, k)
                between = cum[hi] - (cum[lo - 1] if lo > 0 else 0)
                d[c, k] = (between - (n_c[c] + n_c[k]) / 2) ** 2
        return d
    raise ValueError(f"krippendorff_alpha: unknown level {level!r} (nominal | ordinal | interval)")
