"""`avatarv eval` end to end on two tiny clips, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _eval_fixtures import make_clip

ROOT = Path(__file__).resolve().parents[1]


def _eval(*args):
    return subprocess.run([sys.executable, "-m", "avatarv", "eval", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, check=False, cwd=ROOT)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalcli")
    for sub in ("gen", "ref"):
        (d / sub).mkdir()
    make_clip(d / "gen" / "a.mp4", 0, 0, scene=0, seconds=1.6, size=96)
    make_clip(d / "ref" / "a.mp4", 0, 1, scene=1, seconds=1.6, size=96)
    make_clip(d / "gen" / "b.mp4", 3, 2, scene=0, seconds=1.6, size=96)  # generated face of another person
    make_clip(d / "ref" / "b.mp4", 0, 3, scene=1, seconds=1.6, size=96)
    (d / "gen" / "c.mp4").write_bytes(b"not an mp4")  # a broken clip must become a row, not a crash
    return d


def test_eval_writes_per_clip_and_aggregate_metrics_with_backends(dirs):
    out = dirs / "m.json"
    r = _eval("--generated", dirs / "gen", "--reference", dirs / "ref", "--out", out, "--sync-expert", "")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    rows = {c["clip"]: c for c in doc["clips"]}
    assert set(rows) == {"a", "b", "c"} and "error" in rows["c"] and "c.mp4" in rows["c"]["error"]
    assert doc["aggregate"]["n_scored"] == 2 and doc["aggregate"]["n_failed"] == 1
    assert rows["a"]["face_sim"] > rows["b"]["face_sim"]  # same person across scenes beats another person
    for key in ("face_sim", "piqe", "brisque", "lip_audio_corr", "drift_delta_e_max", "motion_stream_style_sim"):
        assert key in doc["aggregate"] and doc["backends"][key]
    assert doc["backends"]["face_sim"].startswith("dlib")
    assert doc["backends"]["sync_conf"].startswith("n/a")


def test_missing_generated_folder_is_one_line(tmp_path):
    r = _eval("--generated", tmp_path / "nope", "--reference", tmp_path, "--out", tmp_path / "m.json")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"avatarv eval: error: {tmp_path / 'nope'}: generated folder not found"]
    assert not (tmp_path / "m.json").exists()
