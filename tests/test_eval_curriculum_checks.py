"""Issue 7's verdicts on eval metrics (eval/curriculum_checks.py) and the `face_sim_other` floor they use
(eval/runner.add_other_identity_similarity): known answers on hand-written per-clip rows."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from avatarv.eval.curriculum_checks import (
    ablation_table,
    curriculum_checks,
    identity_check,
    load_clip_rows,
    paired,
    write_report,
)
from avatarv.eval.runner import _identity_key, add_other_identity_similarity


def _write(d, name, clips):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name.replace('/', '__')}.json").write_text(json.dumps({"version": 1, "clips": clips}))


@pytest.fixture
def systems(tmp_path):
    d = tmp_path / "systems"
    _write(d, "sft", [
        {"clip": "a", "sync_conf": 0.5, "motion_style_sim": 0.9, "face_sim": 0.8, "face_sim_other": 0.3},
        {"clip": "b", "sync_conf": 0.1, "motion_style_sim": 0.7, "face_sim": 0.6, "face_sim_other": 0.7},
        {"clip": "c", "sync_conf": 0.4, "motion_style_sim": 0.8, "face_sim": 0.9, "face_sim_other": 0.2},
        {"clip": "d", "error": "unreadable"},  # error rows are not cases
    ])
    _write(d, "static_frame", [
        {"clip": "a", "sync_conf": 0.2}, {"clip": "b", "sync_conf": 0.3}, {"clip": "c", "sync_conf": 0.1},
        {"clip": "z", "sync_conf": 9.0},  # no partner in sft: must not enter the paired means
    ])
    _write(d, "sft:no_motion", [
        {"clip": "a", "motion_style_sim": 0.95}, {"clip": "b", "motion_style_sim": 0.9},
        {"clip": "c", "motion_style_sim": None},  # missing value: the pair is dropped
    ])
    return d


def test_load_clip_rows_drops_error_rows_and_maps_names(systems):
    rows = load_clip_rows(systems)
    assert set(rows) == {"sft", "static_frame", "sft:no_motion"}
    assert list(rows["sft"].index) == ["a", "b", "c"]


def test_paired_known_answer(systems):
    rows = load_clip_rows(systems)
    c = paired(rows, "sync_conf", "sft", "static_frame")
    # diffs a: +0.3, b: −0.2, c: +0.3 (clip z has no partner)
    assert c["available"] and c["n_cases"] == 3 and c["wins"] == 2 and c["passed"]
    assert c["mean_diff"] == pytest.approx(0.4 / 3)
    assert c["system_mean"] == pytest.approx(1.0 / 3) and c["baseline_mean"] == pytest.approx(0.2)
    m = paired(rows, "motion_style_sim", "sft", "sft:no_motion")
    # diffs a: −0.05, b: −0.2; c dropped (no value)
    assert m["n_cases"] == 2 and m["wins"] == 0 and not m["passed"]
    assert m["mean_diff"] == pytest.approx(-0.125)
    missing = paired(rows, "sync_conf", "sft", "nope")
    assert missing["available"] is False and "nope" in missing["reason"]
    assert paired(rows, "lip_audio_corr", "sft", "static_frame")["available"] is False


def test_identity_check_known_answer(systems):
    rows = load_clip_rows(systems)
    c = identity_check(rows)
    # margins a: +0.5, b: −0.1, c: +0.7
    assert c["available"] and c["n_cases"] == 3 and c["wins"] == 2 and c["passed"]
    assert c["mean_diff"] == pytest.approx(1.1 / 3)
    assert c["same"] == pytest.approx(2.3 / 3) and c["other"] == pytest.approx(0.4)
    assert identity_check(rows, "static_frame")["available"] is False  # no face_sim_other there
    assert identity_check(rows, "absent")["available"] is False


def test_write_report_md_and_json(systems, tmp_path):
    out = tmp_path / "reports" / "curriculum_checks.md"
    checks = write_report(systems, out, {"sync_conf": "avatarv-sync-expert"})
    assert checks == curriculum_checks(systems)
    assert checks["lip_sync_beats_static_frame"]["passed"] and not checks["motion_style_beats_generic_motion"]["passed"]
    md = out.read_text()
    line = {name: next(ln for ln in md.splitlines() if ln.startswith(f"| {name} |")) for name in checks}
    assert line["lip_sync_beats_static_frame"].endswith("| 2/3 | ✓ |")
    assert line["motion_style_beats_generic_motion"].endswith("| 0/2 | ✗ |")
    assert line["identity_same_above_other"].endswith("| 2/3 | ✓ |")
    assert "sync_conf = avatarv-sync-expert" in md and "motion_style_sim = ?" in md
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["checks"]["lip_sync_beats_static_frame"]["mean_diff"] == pytest.approx(0.4 / 3)
    table = {r["system"]: r for r in doc["table"]}
    # the ablation table averages every clip of a system, partnered or not (static_frame: 0.2, 0.3, 0.1, 9.0)
    assert table["sft"]["sync_conf"] == pytest.approx(1.0 / 3) and table["static_frame"]["sync_conf"] == pytest.approx(2.4)
    assert not list(out.parent.glob("*.tmp*"))


def test_write_report_marks_checks_that_cannot_run(tmp_path):
    d = tmp_path / "systems"
    _write(d, "sft", [{"clip": "a", "sync_conf": 0.5, "face_sim": 0.8}])
    checks = write_report(d, tmp_path / "c.md")
    assert not any(c["available"] for c in checks.values())
    md = (tmp_path / "c.md").read_text()
    assert md.count("not run (") == 3 and "✓" not in md.split("## Ablation")[0] and "✗" not in md
    assert list(ablation_table(d)["system"]) == ["sft"]


# ------------------------------------------------------------------------------------------------ face_sim_other
def test_identity_key():
    assert _identity_key("/refs/id007_case3.mp4") == "id007"
    assert _identity_key("/refs/id007_case3_b.png") == "id007"
    assert _identity_key("/refs/solo.mp4") == "solo"


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def test_face_sim_other_is_the_mean_cosine_to_other_identities_centroids():
    e = np.eye(4)
    ref_emb = {  # per-frame embeddings; the reference centroid is their normalised mean
        "/r/A_1.mp4": np.stack([e[0], e[0]]),
        "/r/A_2.mp4": np.stack([e[0], e[1]]),        # same identity as A_1: never an "other"
        "/r/B_1.mp4": np.stack([e[1], e[2]]),
        "/r/C_1.mp4": np.stack([e[3], e[3], e[2]]),
        "/r/D_1.mp4": np.stack([e[2]]),              # not in any row: not part of the run
    }
    scorer = SimpleNamespace(_ref={k: {"emb": v} for k, v in ref_emb.items()}, generated_centroids={
        "/g/a1.mp4": _unit([1, 0.5, 0, 0]), "/g/b1.mp4": _unit([0, 1, 1, 0.2]), "/g/c1.mp4": _unit([0, 0, 1, 1]),
        "/g/err.mp4": _unit([1, 1, 1, 1]), "/g/a2.mp4": _unit([1, 0, 0, 1])})
    rows = [
        {"clip": "a1", "generated": "/g/a1.mp4", "reference": "/r/A_1.mp4", "face_sim": 0.9},
        {"clip": "a2", "generated": "/g/a2.mp4", "reference": "/r/A_2.mp4", "face_sim": 0.7},
        {"clip": "b1", "generated": "/g/b1.mp4", "reference": "/r/B_1.mp4", "face_sim": 0.8},
        {"clip": "c1", "generated": "/g/c1.mp4", "reference": "/r/C_1.mp4", "face_sim": 0.6},
        {"clip": "err", "generated": "/g/err.mp4", "reference": "/r/B_1.mp4", "error": "no audio"},
        {"clip": "lost", "generated": "/g/missing.mp4", "reference": "/r/C_1.mp4", "face_sim": 0.5},
    ]
    add_other_identity_similarity(rows, scorer)
    cent = {k: _unit(v.mean(0)) for k, v in ref_emb.items()}
    gen = scorer.generated_centroids
    want = {
        "a1": np.mean([gen["/g/a1.mp4"] @ cent["/r/B_1.mp4"], gen["/g/a1.mp4"] @ cent["/r/C_1.mp4"]]),
        "a2": np.mean([gen["/g/a2.mp4"] @ cent["/r/B_1.mp4"], gen["/g/a2.mp4"] @ cent["/r/C_1.mp4"]]),
        "b1": np.mean([gen["/g/b1.mp4"] @ cent[r] for r in ("/r/A_1.mp4", "/r/A_2.mp4", "/r/C_1.mp4")]),
        "c1": np.mean([gen["/g/c1.mp4"] @ cent[r] for r in ("/r/A_1.mp4", "/r/A_2.mp4", "/r/B_1.mp4")]),
    }
    by = {r["clip"]: r for r in rows}
    for clip, w in want.items():
        assert by[clip]["face_sim_other"] == pytest.approx(w, abs=1e-6), clip
        assert by[clip]["face_sim_margin"] == pytest.approx(by[clip]["face_sim"] - w, abs=1e-6)
    assert "face_sim_other" not in by["err"] and "face_sim_other" not in by["lost"]
    # by hand: a1 = (1, ½, 0, 0)/√1.25 is orthogonal to C's centroid (2e3 + e2)/√5; B's centroid is (e1 + e2)/√2
    assert by["a1"]["face_sim_other"] == pytest.approx((0.5 / np.sqrt(1.25) / np.sqrt(2) + 0.0) / 2, abs=1e-6)


def test_face_sim_other_needs_another_identity():
    e = np.eye(3)
    scorer = SimpleNamespace(_ref={"/r/A_1.mp4": {"emb": e[:1]}, "/r/A_2.mp4": {"emb": e[1:2]}},
                             generated_centroids={"/g/x.mp4": e[0]})
    rows = [{"clip": "x", "generated": "/g/x.mp4", "reference": "/r/A_1.mp4", "face_sim": 1.0},
            {"clip": "y", "generated": "/g/y.mp4", "reference": "/r/A_2.mp4", "face_sim": 1.0}]
    add_other_identity_similarity(rows, scorer)
    assert all("face_sim_other" not in r for r in rows)


def test_distilled_students_must_keep_the_teachers_quality_within_ten_percent(tmp_path):
    """sync_conf / face_sim higher is better, BRISQUE lower: a student 5 % below on sync and 5 % worse on BRISQUE
    keeps quality; one 20 % below on face similarity does not, and the check names that metric as the worst."""
    from avatarv.eval.curriculum_checks import keeps_quality

    d = tmp_path / "systems"
    teacher = [{"clip": c, "sync_conf": 0.4, "face_sim": 0.8, "brisque": 40.0} for c in "ab"]
    _write(d, "sft", teacher)
    _write(d, "distill:dmd", [{"clip": c, "sync_conf": 0.38, "face_sim": 0.8, "brisque": 42.0} for c in "ab"])
    _write(d, "distill:cfg", [{"clip": c, "sync_conf": 0.4, "face_sim": 0.64, "brisque": 30.0} for c in "ab"])
    checks = curriculum_checks(d)
    good, bad = checks["distill_dmd_keeps_teacher_quality"], checks["distill_cfg_keeps_teacher_quality"]
    assert good["passed"] and good["per_metric"]["sync_conf"]["shortfall"] == pytest.approx(0.05)
    assert good["per_metric"]["brisque"]["shortfall"] == pytest.approx(0.05)
    assert not bad["passed"] and bad["per_metric"]["face_sim"]["shortfall"] == pytest.approx(0.2)
    assert bad["per_metric"]["brisque"]["shortfall"] < 0  # better than the teacher counts as kept
    assert bad["system_mean"] == pytest.approx(0.64) and bad["baseline_mean"] == pytest.approx(0.8)
    assert not keeps_quality(load_clip_rows(d), "distill:none")["available"]
