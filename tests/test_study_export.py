"""The study bundle: deterministic bytes, clean clips only, stand-ins from the same identity, content-named media
(names and paths reveal nothing), generated videos used when given, and the bundle opens as a study."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest

from avatarv.errors import InputError
from avatarv.media import write_video
from avatarv.study.db import open_db
from avatarv.study.export import build_bundle
from avatarv.study.manifest import create_study, read_manifest


@pytest.fixture
def corpus(tmp_path):
    """3 identities × 2 scenes × 2 clips of 8 frames at 32 px, plus one distractor; a minimal manifest.parquet."""
    d = tmp_path / "corpus"
    rows = []
    audio = np.zeros(5120, np.float32)
    k = 0
    for ident in range(3):
        for scene in range(2):
            for c in range(2):
                k += 1
                cid = f"id{ident:03d}_s{scene}_c{c}"
                write_video(d / "clips" / f"{cid}.mp4", np.full((8, 32, 32, 3), 9 * k, np.uint8), 25, audio, 16000)
                rows.append({"clip_id": cid, "path": f"clips/{cid}.mp4", "identity": f"id{ident:03d}", "scene": scene,
                             "split": "train", "distractor": ""})
    write_video(d / "clips" / "id000_s0_d0.mp4", np.full((8, 32, 32, 3), 250, np.uint8), 25, audio, 16000)
    rows.append({"clip_id": "id000_s0_d0", "path": "clips/id000_s0_d0.mp4", "identity": "id000", "scene": 0,
                 "split": "train", "distractor": "blur"})
    pd.DataFrame(rows).to_parquet(d / "manifest.parquet")
    return d


@pytest.fixture
def cfg(tiny_cfg):
    return dataclasses.replace(tiny_cfg, study=dataclasses.replace(tiny_cfg.study, turing_cases=6, likert_cases=4,
                                                                    pairwise_cases=4))


def _files(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_standin_bundle_is_deterministic_and_blind(corpus, cfg, tmp_path):
    s1 = build_bundle(corpus, tmp_path / "b1", cfg)
    s2 = build_bundle(corpus, tmp_path / "b2", cfg)
    assert s1 == s2 and s1["mode"] == "standin" and s1["cases"] == 14
    assert _files(tmp_path / "b1") == _files(tmp_path / "b2")  # byte-identical bundles

    cases = pd.read_csv(tmp_path / "b1" / "manifest.csv", keep_default_na=False)
    media = pd.read_csv(tmp_path / "b1" / "media.csv").set_index("file")
    assert list(cases.kind.value_counts().sort_index()) == [4, 4, 6]
    for f, row in media.iterrows():  # content-named: the name is the file's own hash, nothing else
        data = (tmp_path / "b1" / f).read_bytes()
        assert f == f"media/{hashlib.sha256(data).hexdigest()[:16]}.mp4" and row.sha256 == hashlib.sha256(data).hexdigest()
    assert "id000_s0_d0" not in set(cases.clip_id) and "clips/id000_s0_d0.mp4" not in set(media.source)
    for case in cases[cases.kind == "turing"].itertuples():
        real, fake = media.loc[case.video_a], media.loc[case.video_b]
        assert case.system_a == "real" and case.system_b.startswith("standin")
        assert real.source == f"clips/{case.clip_id}.mp4"
        assert real.source != fake.source  # another clip ...
        assert real.source.split("/")[1][:5] == fake.source.split("/")[1][:5] == case.identity  # ... same person

    with open_db(tmp_path / "s.db")() as s:  # the bundle is a valid study
        study = create_study(s, read_manifest(tmp_path / "b1" / "manifest.csv"), tmp_path / "b1", 6, seed=0)
        assert len(study.cases) == 14 and all(len(c.assignments) == 3 for c in study.cases)


def test_generated_videos_used_when_given(corpus, cfg, tmp_path):
    gen = tmp_path / "gen"
    for i, cid in enumerate(("id001_s0_c0", "id002_s1_c1")):
        write_video(gen / f"{cid}.mp4", np.full((8, 32, 32, 3), 70 + 60 * i, np.uint8), 25, np.zeros(5120, np.float32), 16000)
    summary = build_bundle(corpus, tmp_path / "b", cfg, {"avatarv_sft": gen})
    assert summary["mode"] == "generated" and summary["systems"] == ["real", "avatarv_sft"]
    cases = pd.read_csv(tmp_path / "b" / "manifest.csv", keep_default_na=False)
    media = pd.read_csv(tmp_path / "b" / "media.csv").set_index("file")
    assert set(cases.clip_id) <= {"id001_s0_c0", "id002_s1_c1"}
    t = cases[cases.kind == "turing"].iloc[0]
    assert t.system_b == "avatarv_sft" and media.loc[t.video_b].source == f"avatarv_sft/{t.clip_id}.mp4"
    pw = cases[cases.kind == "pairwise"]
    assert set(pw.system_a) == {"avatarv_sft"} and set(pw.system_b) == {"real"}  # one system: compared with real
    with pytest.raises(InputError, match="reserved"):
        build_bundle(corpus, tmp_path / "b2", cfg, {"real": gen})


def test_missing_corpus_refused(tmp_path, cfg):
    with pytest.raises(InputError, match="corpus manifest not found"):
        build_bundle(tmp_path / "nothing", tmp_path / "b", cfg)


def test_cli_export_create_simulate_analyze(corpus, tmp_path, capsys):
    from avatarv.cli import main

    bundle, db, out = tmp_path / "bundle", tmp_path / "s.db", tmp_path / "report"
    assert main(["study", "export", "--corpus", str(corpus), "--out", str(bundle)]) == 0
    assert main(["study", "create", "--db", str(db), "--manifest", str(bundle / "manifest.csv"),
                 "--media-root", str(bundle), "--annotators", "ann_a,ann_b,ann_c,ann_d"]) == 0
    links = capsys.readouterr().out
    assert links.count("/a/") == 4 and "/results/" in links
    assert main(["study", "create", "--db", str(db), "--manifest", str(bundle / "manifest.csv"),
                 "--media-root", str(bundle)]) == 2  # the same study name twice is refused
    assert main(["study", "simulate", "--db", str(db)]) == 0
    assert main(["study", "analyze", "--db", str(db), "--out", str(out), "--no-mlflow"]) == 0
    assert "SIMULATED" in capsys.readouterr().out
    assert (out / "turing.png").exists() and (out / "metrics.json").exists()
    assert main(["study", "analyze", "--db", str(tmp_path / "none.db"), "--no-mlflow"]) == 2
