"""End to end: `avatarv curate` on a fixture corpus with ground truth writes the contract tables, links the same
person across scenes, rejects an impostor, scores itself; the Ray engine gives the identical tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _curate_fixtures import make_clip

from avatarv.cli import main as cli_main
from avatarv.config import load_config
from avatarv.curate.corpus_io import read_outputs

RED, GREEN = (210, 40, 40), (40, 200, 60)
SPEC = [  # clip_id, distractor, face shown, scene backdrop
    ("id000_s0_c0", "", "astronaut", None), ("id000_s0_c1", "", "astronaut", None), ("id000_s1_c0", "", "astronaut", RED),
    ("id001_s0_c0", "", "grace_hopper", None), ("id001_s1_c0", "", "grace_hopper", GREEN),
    ("id000_s1_d0", "wrong_identity", "grace_hopper", RED), ("id001_s0_d0", "silence", "grace_hopper", None),
    ("id001_s1_d1", "truncated", "grace_hopper", GREEN),
]


def make_corpus(root: Path, spec=SPEC) -> Path:
    (root / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for cid, kind, who, bg in spec:
        make_clip(root / "clips" / f"{cid}.mp4", "" if kind == "wrong_identity" else kind, who=who, background=bg)
        truth = {"true_identity": "id001"} if kind == "wrong_identity" else {}
        rows.append(dict(clip_id=cid, path=f"clips/{cid}.mp4", identity=cid[:5], scene_key=cid[:8], distractor=kind,
                         av_offset_frames=0, flags=json.dumps(truth)))
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet")
    return root


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"))
    out = corpus.parent / "curated"
    assert cli_main(["curate", "--in", str(corpus), "--out", str(out), "--workers", "1"]) == 0
    return corpus, out, read_outputs(out)


def test_contract_tables(curated):
    corpus, _, res = curated
    clips = res["clips"]
    assert list(clips.clip_id) == [s[0] for s in SPEC]
    for col in ("clip_id", "path", "kept", "reason", "stage", "identity_pred", "corpus_dir", "sync_confidence"):
        assert col in clips.columns
    assert list(res["identity_graph"].columns) == ["src", "dst", "similarity"]
    assert {"ref_clip_id", "ref_path", "target_clip_id", "target_path", "identity_pred", "ref_scene",
            "target_scene"} <= set(res["pairs"].columns)
    assert all((corpus / p).exists() for p in res["pairs"].ref_path)


def test_decisions_and_identities(curated):
    clips = curated[2]["clips"].set_index("clip_id")
    assert clips.loc[["id000_s0_c0", "id000_s0_c1", "id000_s1_c0", "id001_s0_c0", "id001_s1_c0"], "kept"].all()
    assert clips.at["id000_s1_d0", "stage"] == "identity"  # grace's face filed under id000
    assert clips.at["id001_s0_d0", "stage"] == "speech" and clips.at["id001_s1_d1", "stage"] == "container"
    pred = clips["identity_pred"]
    assert pred["id000_s0_c0"] == pred["id000_s0_c1"] == pred["id000_s1_c0"] != pred["id001_s0_c0"] == pred["id001_s1_c0"]
    assert pred["id000_s1_d0"] == pred["id001_s0_c0"]  # the impostor clip joins the person it shows


def test_pairs_cross_scene_same_person(curated):
    pairs = curated[2]["pairs"]
    assert len(pairs) == 2 * 2 + 2  # id000: {s0c0, s0c1} x {s1c0} both ways; id001: s0c0 <-> s1c0
    assert (pairs.ref_clip_id.str[:5] == pairs.target_clip_id.str[:5]).all()
    assert (pairs.ref_clip_id.str[:8] != pairs.target_clip_id.str[:8]).all()


def test_report_scores(curated):
    rep = curated[2]["report"]
    s = rep["scores"]
    assert rep["n_clips"] == len(SPEC) and rep["has_ground_truth"]
    assert s["min_kind_recall"] == 1.0 and s["clean_false_rejection"] == 0.0 and s["pair_precision"] == 1.0
    assert s["identity"]["pairwise_precision"] == 1.0 and s["identity"]["purity"] == 1.0
    assert rep["funnel"][0]["stage"] == "input" and rep["funnel"][-1]["remaining"] == rep["n_kept"]


def test_corpus_without_manifest_is_curated_without_scores(tmp_path, curated, capsys):
    """Real footage: a clean clip, the same clip as a camera gives it (29.97 fps, 48 kHz stereo) and a truncated
    one; the first two are kept, the third is listed at the end with its stage and reason."""
    import subprocess

    corpus, _, _ = curated
    real = tmp_path / "real"
    (real / "clips").mkdir(parents=True)
    for cid in ("id000_s0_c0", "id001_s1_d1"):
        (real / "clips" / f"{cid}.mp4").write_bytes((corpus / "clips" / f"{cid}.mp4").read_bytes())
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(corpus / "clips" / "id000_s0_c0.mp4"), "-r", "30000/1001",
                    "-ar", "48000", "-ac", "2", str(real / "clips" / "id000_s0_c0_ntsc.mp4")], check=True)
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli_main(["curate", "--in", str(real), "--out", str(out), "--workers", "1"]) == 0
    res = read_outputs(out)
    assert not res["report"]["has_ground_truth"] and "scores" not in res["report"]
    assert list(res["clips"].kept) == [True, True, False], res["clips"][["clip_id", "stage", "reason"]]
    cap = capsys.readouterr()
    assert [ln.split(": ")[1] for ln in cap.err.splitlines() if ln.startswith("avatarv curate: rejected")] == \
        [f"rejected {real / 'clips' / 'id001_s1_d1.mp4'}"]
    assert cap.out.strip().splitlines()[-1] == "avatarv curate: 2 of 3 clips kept, 1 rejected"


def test_missing_corpus_is_a_one_line_error(tmp_path, capsys):
    assert cli_main(["curate", "--in", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "corpus folder not found" in capsys.readouterr().err


def test_split_scene_cuts_curates_each_shot(tmp_path):
    import dataclasses

    from avatarv.curate import curate_corpus

    corpus = tmp_path / "cut"
    (corpus / "clips").mkdir(parents=True)
    make_clip(corpus / "clips" / "x.mp4", "scene_cut", seconds=2.4)  # astronaut, then grace hopper from frame 30
    cfg = dataclasses.replace(load_config("tiny").curate, split_scene_cuts=True)
    res = curate_corpus(corpus, tmp_path / "out", cfg, workers=1)
    clips = res.clips.set_index("clip_id")
    assert list(clips.index) == ["x", "x#0", "x#1"]
    assert clips.at["x", "stage"] == "scene_cut" and clips.loc[["x#0", "x#1"], "kept"].all()
    assert clips.at["x#0", "path"] == "../out/segments/x_seg0.mp4" and (corpus / clips.at["x#1", "path"]).exists()
    assert clips.at["x#0", "identity_pred"] != clips.at["x#1", "identity_pred"]  # two people, one per shot


def _same_tables(a: dict, b: dict) -> None:
    pd.testing.assert_frame_equal(a["clips"].drop(columns=["corpus_dir"]), b["clips"].drop(columns=["corpus_dir"]))
    pd.testing.assert_frame_equal(a["pairs"], b["pairs"])
    pd.testing.assert_frame_equal(a["identity_graph"], b["identity_graph"])


def test_worker_processes_give_the_in_process_rows(tmp_path, curated):
    """The local engine's child-process path (workers=2) reproduces the in-process per-clip rows exactly."""
    corpus, _, res = curated
    few = tmp_path / "few"
    (few / "clips").mkdir(parents=True)
    keep = ["id000_s0_c0", "id001_s1_d1"]
    for cid in keep:
        (few / "clips" / f"{cid}.mp4").write_bytes((corpus / "clips" / f"{cid}.mp4").read_bytes())
    assert cli_main(["curate", "--in", str(few), "--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    cross_clip = ["corpus_dir", "identity_pred", "scene_pred", "identity_consistency"]  # depend on the other clips
    mine = read_outputs(tmp_path / "b")["clips"].drop(columns=cross_clip)
    ref = res["clips"].set_index("clip_id").loc[keep].reset_index().drop(columns=cross_clip)
    pd.testing.assert_frame_equal(mine, ref)


@pytest.mark.slow
def test_ray_engine_matches_in_process(tmp_path, curated):
    corpus, _, res = curated
    assert cli_main(["curate", "--in", str(corpus), "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 0
    ray_res = read_outputs(tmp_path / "ray")
    assert ray_res["report"]["engine"] == "ray"
    _same_tables(ray_res, res)
