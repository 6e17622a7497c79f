"""Study statistics on answers with known results, agreement statistics on their papers' own examples, and the
SIMULATED study end to end (simulate → analyze → report)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from avatarv.study.agreement import fleiss_kappa, krippendorff_alpha
from avatarv.study.analysis import (
    ANSWER_COLUMNS,
    agreement,
    annotator_accuracy,
    answers_frame,
    bootstrap_ratio,
    likert_means,
    summarize,
    turing_summary,
    win_rates,
)
from avatarv.study.db import DIMENSIONS, open_db
from avatarv.study.fixtures import make_demo_manifest
from avatarv.study.manifest import create_study, read_manifest

NAN = np.nan


def _frame(rows: list[dict]) -> pd.DataFrame:
    full = []
    for r in rows:
        row = dict.fromkeys(ANSWER_COLUMNS, "") | dict.fromkeys(DIMENSIONS, NAN) | {"correct": NAN, "seconds": NAN, "simulated": False}
        row.update(r)
        if row["kind"] == "turing":
            row["correct"] = float(row["choice"] == row["real_side"])
        full.append(row)
    return pd.DataFrame(full, columns=ANSWER_COLUMNS)


def _turing(case_fooled: list[int], per_case: int = 3, real_side: str = "left") -> pd.DataFrame:
    """One Turing case per entry; entry = how many of its `per_case` annotators picked the generated side."""
    rows = []
    wrong = "right" if real_side == "left" else "left"
    for i, n_fooled in enumerate(case_fooled):
        for a in range(per_case):
            rows.append({"case": f"c{i}", "kind": "turing", "annotator": f"a{a}", "real_side": real_side,
                         "choice": wrong if a < n_fooled else real_side})
    return _frame(rows)


def test_all_correct_annotators_fool_nobody():
    t = turing_summary(_turing([0, 0, 0, 0]), per_case=3, n_boot=200, seed=0)
    assert t["fooled_at_least_one_rate"] == 0.0 and t["accuracy"] == 1.0
    assert t["fooled_ci"] == (0.0, 0.0) and t["accuracy_ci"] == (1.0, 1.0)


def test_fooled_at_least_one_of_three_counts_cases_not_answers():
    # 4 cases: fooled 0, 1, 2, 3 of 3 → 3/4 cases fooled at least one; 6 of 12 answers correct.
    t = turing_summary(_turing([0, 1, 2, 3]), per_case=3, n_boot=200, seed=0)
    assert t["fooled_at_least_one_rate"] == pytest.approx(0.75)
    assert t["accuracy"] == pytest.approx(0.5)
    assert t["cases_complete"] == 4


def test_incomplete_cases_left_out_of_fooled_rate_but_not_accuracy():
    df = _turing([0, 0])
    df = pd.concat([df, _turing([1], per_case=2).assign(case="partial")])  # only 2 of 3 answers in
    t = turing_summary(df, per_case=3, n_boot=100, seed=0)
    assert t["cases_complete"] == 2 and t["fooled_at_least_one_rate"] == 0.0
    assert t["accuracy"] == pytest.approx(7 / 8)


def test_per_annotator_accuracy_and_time():
    df = _turing([1, 1, 0, 0])  # annotator a0 is fooled in the first two cases
    df["seconds"] = np.arange(len(df), dtype=float)  # a0 answers rows 0, 3, 6, 9 → median 4.5
    likert_only = _frame([{"case": "l", "kind": "likert", "annotator": "z", "left_system": "S", "seconds": 7.0}])
    acc = annotator_accuracy(pd.concat([df, likert_only]), n_boot=100, seed=0).set_index("annotator")
    assert acc.loc["a0", "accuracy"] == 0.5 and acc.loc["a1", "accuracy"] == 1.0 and acc.loc["a0", "n"] == 4
    assert acc.loc["a0", "median_seconds"] == 4.5
    assert acc.loc["z", "n"] == 0 and np.isnan(acc.loc["z", "accuracy"]) and acc.loc["z", "median_seconds"] == 7.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_ci_contains_the_mean_and_narrows_with_data(seed):
    rng = np.random.default_rng(seed)
    x = rng.random(40)
    lo, hi = bootstrap_ratio(x, np.ones_like(x), 500, seed)
    assert lo <= x.mean() <= hi and lo < hi
    big = np.tile(x, 25)
    lo2, hi2 = bootstrap_ratio(big, np.ones_like(big), 500, seed)
    assert hi2 - lo2 < (hi - lo) / 2  # 25× the data → about a fifth of the width


def test_likert_means_known_values():
    rows = []
    for case, system, scores in (("c1", "A", [5, 4]), ("c2", "A", [3, 3]), ("c3", "B", [2, 1])):
        for a, s in enumerate(scores):
            rows.append({"case": case, "kind": "likert", "annotator": f"a{a}", "left_system": system,
                         **dict.fromkeys(DIMENSIONS, s)})
    lk = likert_means(_frame(rows), n_boot=300, seed=0)
    a = lk[(lk.system == "A") & (lk.dimension == "overall")].iloc[0]
    b = lk[(lk.system == "B") & (lk.dimension == "lip_sync")].iloc[0]
    assert a["mean"] == pytest.approx(3.75) and a.n == 4 and a.ci_low <= 3.75 <= a.ci_high
    assert b["mean"] == pytest.approx(1.5)
    assert list(lk[lk.system == "A"].dimension) == list(DIMENSIONS)


def test_win_rates_count_ties_half_regardless_of_side():
    rows = [
        {"case": "p1", "kind": "pairwise", "annotator": "a0", "left_system": "X", "right_system": "Y", "choice": "left"},
        {"case": "p1", "kind": "pairwise", "annotator": "a1", "left_system": "X", "right_system": "Y", "choice": "tie"},
        {"case": "p2", "kind": "pairwise", "annotator": "a0", "left_system": "Y", "right_system": "X", "choice": "left"},
        {"case": "p2", "kind": "pairwise", "annotator": "a1", "left_system": "Y", "right_system": "X", "choice": "right"},
    ]
    w = win_rates(_frame(rows), n_boot=100, seed=0).iloc[0]
    assert (w.system_a, w.system_b, w.n, w.ties) == ("X", "Y", 4, 1)
    assert w.win_rate_a == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_fleiss_kappa_identical_raters_and_published_example():
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0], [0, 3]])) == pytest.approx(1.0)
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories → kappa = 0.210.
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[2, 0], [1, 0]]))


def test_krippendorff_alpha_published_example_and_identical_raters():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units, missing values.
    d = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
                  [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
                  [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
                  [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]])
    assert krippendorff_alpha(d, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(d, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(d, "interval") == pytest.approx(0.849, abs=5e-4)
    same = np.tile(np.array([[1, 5, 3, 2, 4]], float), (3, 1))
    assert krippendorff_alpha(same, "interval") == pytest.approx(1.0)


def test_agreement_on_answer_frames():
    df = _turing([0, 3, 0, 3])  # raters always agree (right, fooled, right, fooled) on the side they pick
    assert agreement(df, per_case=3)["turing_fleiss_kappa"] == pytest.approx(1.0)
    rows = [{"case": f"c{c}", "kind": "likert", "annotator": f"a{a}", "left_system": "S", **dict.fromkeys(DIMENSIONS, 1 + c)}
            for c in range(4) for a in range(3)]
    ag = agreement(_frame(rows), per_case=3)
    assert all(ag[f"likert_{d}_alpha"] == pytest.approx(1.0) for d in DIMENSIONS)


def test_simulated_study_end_to_end(tmp_path):
    from avatarv.study.report import write_report
    from avatarv.study.simulate import simulate_answers

    media = tmp_path / "media"
    with open_db(tmp_path / "s.db")() as s:
        study = create_study(s, read_manifest(make_demo_manifest(media)), media, 6, seed=1)
        assert simulate_answers(s, study, seed=0) == 18
        assert simulate_answers(s, study, seed=0) == 0  # everything answered: nothing more stored
        df = answers_frame(s, study)
    assert len(df) == 18 and df.simulated.all()
    summary = summarize(df, per_case=3, n_boot=100, seed=0)
    assert summary["simulated"] and summary["turing"]["cases_complete"] == 2
    paths = write_report(summary, tmp_path / "report")
    for key in ("turing_plot", "likert_plot", "pairwise_plot"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["simulated"] is True and metrics["answers"] == 18
    assert "SIMULATED" in paths["results_md"].read_text().splitlines()[0]
