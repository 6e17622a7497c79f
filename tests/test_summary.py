"""reports/summary.json: the headline figures picked from the stages' metrics files, and nothing made up."""

from __future__ import annotations

import json

import pytest

from avatarv.eval.summary import SPEC, build_summary, lookup, write_summary


def test_lookup_paths():
    doc = {"a": {"b": 2}, "sft.sync_conf": 0.3,
           "rows": [{"kind": "x", "system": "base", "v": 1}, {"kind": "x", "system": "adapted", "v": 2}]}
    assert lookup(doc, "a.b") == 2
    assert lookup(doc, "sft.sync_conf") == 0.3  # a flat key with a dot in it
    assert lookup(doc, "rows[kind=x,system=adapted].v") == 2
    with pytest.raises(KeyError):
        lookup(doc, "rows[kind=x].v")  # two records match: ambiguous, not the first
    with pytest.raises(KeyError):
        lookup(doc, "a.c")


def test_summary_takes_what_the_stages_wrote_and_lists_the_rest(tmp_path):
    (tmp_path / "02_vae").mkdir()
    (tmp_path / "02_vae" / "metrics.json").write_text(json.dumps({"psnr": 29.72551, "face_psnr": "n/a"}))
    (tmp_path / "11_leaderboard").mkdir()
    (tmp_path / "11_leaderboard" / "metrics.json").write_text(json.dumps({"sft.sync_conf": 0.1, "sft.face_sim": True}))
    doc = write_summary(tmp_path, tmp_path / "summary.json")
    assert json.loads((tmp_path / "summary.json").read_text()) == doc == build_summary(tmp_path)
    assert doc["vae"] == {"psnr": 29.7255} and doc["leaderboard.sft"] == {"sync_conf": 0.1}
    missing = doc["missing"]
    assert "vae.face_psnr (02_vae: face_psnr is not a number)" in missing
    assert "leaderboard.sft.face_sim (11_leaderboard: sft.face_sim is not a number)" in missing
    assert any(m.startswith("corpus.clips (00_corpus") for m in missing)
    found = sum(len(v) for k, v in doc.items() if k != "missing")
    assert found + len(missing) == len(SPEC)  # every figure is either reported or listed as missing
