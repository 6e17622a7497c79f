"""Curation cascade on fixture clips: each distractor kind is rejected by the stage meant to catch it, clean
clips pass, and a corrupt file becomes a rejection row (even when its decoder kills the process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _curate_fixtures import FPS, SR, make_clip

from avatarv.config import load_config
from avatarv.curate import probe as probe_mod
from avatarv.curate.cascade import curate_clip
from avatarv.curate.probe import probe_batch
from avatarv.curate.sync_offset import estimate_offset

KINDS = {  # fixture kind -> the stage that must reject it
    "": None, "av_offset": "sync", "silence": "speech", "noise_audio": "speech", "scene_cut": "scene_cut",
    "no_face": "face_count", "two_faces": "face_count", "low_res": "container", "no_audio": "container",
    "truncated": "container",
}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    d = tmp_path_factory.mktemp("cascade")
    paths = [make_clip(d / f"c_{k or 'clean'}.mp4", k) for k in KINDS]
    probes = probe_batch([str(p) for p in paths])
    cfg = load_config("tiny").curate
    return {k: curate_clip(p.stem, p, pr, cfg) for k, p, pr in zip(KINDS, paths, probes)}


def test_clean_clip_passes_every_stage(rows):
    r = rows[""]
    assert r["kept"], r["reason"]
    assert json.loads(r["passed_stages"]) == ["container", "scene_cut", "speech", "face_count", "face_size",
                                              "head_pose", "quality", "sync"]
    assert r["av_offset_pred"] == 0 and r["n_scene_cuts"] == 0 and r["face_frac"] == 1.0
    assert r["speech_frac"] > 0.5 and len(r["face_embedding"]) == 128


@pytest.mark.parametrize("kind", [k for k in KINDS if k])
def test_distractor_rejected_by_its_stage(rows, kind):
    r = rows[kind]
    assert not r["kept"]
    assert r["stage"] == KINDS[kind], (r["stage"], r["reason"])
    assert r["reason"]  # a human-readable reason with the measured value


def test_measured_values_explain_the_decision(rows):
    assert rows["av_offset"]["av_offset_pred"] == 4  # the fixture delays the audio by 4 frames
    assert rows["scene_cut"]["n_scene_cuts"] == 1 and json.loads(rows["scene_cut"]["segments"]) == [[0, 25], [25, 50]]
    assert rows["two_faces"]["max_faces_seen"] == 2
    assert rows["silence"]["speech_frac"] == 0.0
    assert rows["noise_audio"]["spectral_flatness"] > 0.8 > rows[""]["spectral_flatness"]
    assert rows["low_res"]["width"] == 32 and "frame size 32x32" in rows["low_res"]["reason"]
    assert np.isnan(rows["truncated"]["duration_s"])


def test_sync_offset_recovers_known_shift():
    rng = np.random.default_rng(0)
    n = 100
    mouth = np.convolve(rng.random(n + 20), np.ones(3) / 3, "same")[:n]
    hop = SR // FPS
    for shift in (-3, 0, 2):
        env = np.roll(mouth, shift)  # audio delayed by `shift` frames
        audio = np.concatenate([rng.normal(0, 1, hop) * e for e in env]).astype(np.float32)
        off, conf, corr = estimate_offset(mouth, audio, SR, FPS, max_lag=6)
        assert off == shift and conf > 0.3 and corr.shape == (13,)


def test_probe_rejects_bad_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    res = probe_batch([str(empty), str(junk), str(tmp_path / "missing.mp4")])
    assert [r["ok"] for r in res] == [False, False, False]
    assert "empty" in res[0]["error"] and "not found" in res[2]["error"]


def test_probe_batch_survives_a_crashing_decoder(tmp_path, monkeypatch):
    good = make_clip(tmp_path / "good.mp4", "", seconds=1.0)
    crash = tmp_path / "crash.mp4"
    crash.write_bytes(good.read_bytes())
    child = tmp_path / "crashing_child.py"  # the real probe child, except it aborts on files named crash*
    child.write_text(
        "import json, os, sys\nfrom avatarv.curate.probe import probe_one\n"
        "for p in json.loads(sys.stdin.read()):\n"
        "    if os.path.basename(p).startswith('crash'): os.abort()\n"
        "    print(json.dumps(probe_one(p)), flush=True)\n")
    monkeypatch.setattr(probe_mod, "child_command", lambda: [sys.executable, str(child)])
    res = probe_batch([str(good), str(crash), str(good)])
    assert [r["ok"] for r in res] == [True, False, True]
    assert "decoder crashed" in res[1]["error"]
    assert res[0]["decoded_frames"] == res[2]["decoded_frames"] == 25


def test_sync_uses_a_supplied_sync_expert(tmp_path):
    """With sync_expert_dir pointing at a saved avatarv.models.sync_expert model the expert backend runs (random
    weights here: this checks the plumbing, not the judgement); without one the landmark backend runs."""
    import dataclasses

    torch = pytest.importorskip("torch")
    se = pytest.importorskip("avatarv.models.sync_expert")
    torch.manual_seed(0)
    se.SyncExpert().save_pretrained(tmp_path / "expert")
    clip = make_clip(tmp_path / "c.mp4", "", seconds=1.2)
    probe = probe_batch([str(clip)])[0]
    base = load_config("tiny").curate
    with_expert = curate_clip("c", clip, probe, dataclasses.replace(base, sync_expert_dir=str(tmp_path / "expert")))
    without = curate_clip("c", clip, probe, dataclasses.replace(base, sync_expert_dir=str(tmp_path / "missing")))
    assert with_expert["sync_backend"] == "expert" and without["sync_backend"] == "landmarks"
    assert abs(with_expert["av_offset_pred"]) <= base.sync_search_frames and np.isfinite(with_expert["sync_confidence"])
