"""Cross-scene benchmark rule, its versioned file, and the leaderboard's promises (separate reported row,
backend-named columns, validation marks)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from avatarv.errors import InputError
from avatarv.eval import benchmark, leaderboard


def _manifest():
    rows = []
    for ident, split in (("id001", "train"), ("id008", "holdout"), ("id009", "holdout")):
        for scene in (0, 1, 2):
            for c in (0, 1):
                rows.append({"clip_id": f"{ident}_s{scene}_c{c}", "path": f"clips/{ident}_s{scene}_c{c}.mp4",
                             "identity": ident, "scene": scene, "split": split, "distractor": "", "text": f"t{scene}{c}",
                             "duration": 4.0, "n_frames": 100})
    rows.append({**rows[-1], "clip_id": "id009_s2_d0", "path": "clips/id009_s2_d0.mp4", "distractor": "blur"})
    return pd.DataFrame(rows)


def test_cases_follow_the_cross_scene_rule():
    cases = benchmark.build_cases(_manifest(), 10)
    assert len(cases) == 10 and cases == benchmark.build_cases(_manifest(), 10)
    for c in cases:
        assert c["identity"] in ("id008", "id009")  # held-out only
        assert c["ref_scene"] != c["target_scene"]
        assert c["ref_clip_id"].startswith(c["identity"]) and c["target_clip_id"].startswith(c["identity"])
        assert "_d" not in c["target_clip_id"] and "_d" not in c["ref_clip_id"]  # clean clips only
    assert [c["identity"] for c in cases[:4]] == ["id008", "id009", "id008", "id009"]  # round-robin
    assert len({c["case_id"] for c in cases}) == len(cases)


def test_versioned_file_refuses_a_changed_corpus(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _manifest().to_parquet(corpus / "manifest.parquet")
    monkeypatch.setattr(benchmark, "REPORTS", tmp_path / "reports")
    doc = benchmark.make_benchmark(corpus, "v_test", 4)
    saved = json.loads((tmp_path / "reports" / "benchmark" / "v_test.json").read_text())
    assert saved["cases"] == doc["cases"] and saved["fingerprint"] == doc["fingerprint"]
    assert benchmark.make_benchmark(corpus, "v_test", 4)["fingerprint"] == doc["fingerprint"]  # same corpus: fine
    m = _manifest()
    m.loc[m.clip_id == "id008_s0_c0", "text"] = "changed"
    m.to_parquet(corpus / "manifest.parquet")
    with pytest.raises(InputError, match="different corpus"):
        benchmark.make_benchmark(corpus, "v_test", 4)


def test_leaderboard_keeps_reported_figures_apart_and_names_backends(tmp_path):
    doc = {
        "profile": "tiny", "benchmark": {"version": "v", "n_cases": 2, "fingerprint": "f", "rule": "r"},
        "backends": {"face_sim": "dlib-resnet128 (face_recognition_models)", "brisque": "brisque 0.2.0 SVM",
                     "sync_conf": "avatarv-sync-expert conf@0"},
        "validation": {"sync": {"offset_within_1": 1.0, "swap_lse_c": 0.1, "synced_lse_c": 0.4},
                       "identity_corpus": {"auc": 0.99}, "identity_photos": {"auc": 0.98},
                       "quality": {"monotone": {"blur": {"brisque": True}, "noise": {"brisque": False}}}},
        "systems": {"real_video": {"kind": "upper bound", "aggregate": {"n_scored": 2, "face_sim": 0.9, "sync_conf": 0.4, "brisque": 20.0}},
                    "static_frame": {"kind": "baseline", "aggregate": {"n_scored": 2, "face_sim": 0.95, "sync_conf": 0.0}},
                    "sft": {"kind": "trained stage", "error": "RuntimeError: broken"}},
    }
    table = leaderboard.write_leaderboard(doc, tmp_path / "lb.md", tmp_path / "lb.csv")
    md = (tmp_path / "lb.md").read_text()
    measured, reported = md.split("## Reported, other protocol")
    assert "8.970" not in measured and "8.970" in reported and "4.850" in reported and "0.840" in reported
    assert "Face sim [dlib-resnet128] ✓" in md and "BRISQUE ↓ [brisque 0.2.0 SVM] ✗(noise)" in md
    assert "RuntimeError: broken" in measured  # a failed system stays visible as a row
    csv = pd.read_csv(tmp_path / "lb.csv", index_col=0)
    assert list(csv.index) == ["real_video", "static_frame", "sft", "Avatar V (seed paper)"]
    _, headers = leaderboard.build_table(doc)
    nums = leaderboard.flat_numbers(table, headers)
    assert nums["real_video.face_sim"] == 0.9 and nums["Avatar_V__seed_paper_.syncnet_lse_c"] == 8.97


def test_leaderboard_marks_each_sync_confidence_and_quality_domain_by_its_own_check():
    falls = {"monotone": True, "swap_below_synced": True}
    val = {"sync": {"offset_within_1": 1.0, "swap_lse_c": 0.1, "synced_lse_c": 0.4, "conf_variant": "conf_offset_weighted",
                    "conf_monotone": True, "swap_below_synced": True,
                    "variants": {"conf_offset_weighted": falls, "conf_at_zero": {**falls, "monotone": False}}},
           "quality": {"domains": {
               "photos": {"monotone": {"blur": {"brisque": True, "niqe": True}, "noise": {"brisque": True, "niqe": True}}},
               "corpus": {"monotone": {"blur": {"brisque": True, "niqe": False}, "noise": {"brisque": False, "niqe": False}}}}}}
    flags = leaderboard.validation_flags(val)
    assert flags["sync_conf"] is True and flags["sync_conf_at_zero"] is False and flags["sync_offset"] is True
    assert flags["brisque"] == "(noise; corpus) ✓(photos)" and flags["niqe"] == "(blur,noise; corpus) ✓(photos)"
    assert flags["piqe"] == "(blur,noise; photos) ✗(blur,noise; corpus)"  # never validated = failed everywhere
    val["sync"]["swap_below_synced"] = False  # swapped audio scoring as high as synced voids the ranked column
    assert leaderboard.validation_flags(val)["sync_conf"] is False
