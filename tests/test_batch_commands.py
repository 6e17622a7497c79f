"""Every batch command (eval, ingest, curate, study export) ends the same way (batch.py): a run that handles nothing
exits non-zero with one line per rejected file naming the file and the reason; a partial batch keeps its rejection
rows, lists them at the end and says how many succeeded. The usable files here are 29.97 fps clips with 48 kHz
stereo audio, as a camera gives them."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from _media_fixtures import write_clip

from avatarv.cli import main as cli_main
from avatarv.media import probe, write_video

NTSC = Fraction(30000, 1001)


def _bad_files(d):
    d.mkdir(parents=True, exist_ok=True)
    (d / "garbage.mp4").write_bytes(b"this is not an mp4" * 50)
    (d / "empty.mp4").write_bytes(b"")
    return {d / "garbage.mp4": "not a readable media container", d / "empty.mp4": "file is empty"}


def _rejections(err: str, command: str) -> dict[str, str]:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"avatarv {command}: rejected ")]
    return dict(ln[len(f"avatarv {command}: rejected "):].split(": ", 1) for ln in lines)


def _assert_listed(err: str, command: str, bad: dict) -> None:
    got = _rejections(err, command)
    assert set(got) == {str(p) for p in bad}, err
    for p, problem in bad.items():
        assert problem in got[str(p)]


# ------------------------------------------------------------------------------------------------ eval
def test_eval_that_scores_nothing_exits_non_zero_naming_each_file(tmp_path, capsys):
    bad = _bad_files(tmp_path / "gen")
    write_clip(tmp_path / "ref" / "garbage.mp4", sample_rate=None)
    out = tmp_path / "m.json"
    assert cli_main(["eval", "--generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref" / "garbage.mp4"),
                     "--out", str(out), "--sync-expert", "", "--no-progress"]) == 1
    cap = capsys.readouterr()
    _assert_listed(cap.err, "eval", bad)
    assert "avatarv eval: 0 of 2 clips scored, 2 rejected" in cap.out
    assert all(r["error"] for r in json.loads(out.read_text())["clips"])  # the rows are kept


def test_eval_partial_batch_keeps_rows_and_counts(tmp_path, capsys):
    bad = _bad_files(tmp_path / "gen")
    write_clip(tmp_path / "gen" / "good.mp4", fps=NTSC, sample_rate=48000, channels=2)
    write_clip(tmp_path / "ref.mp4", fps=30, sample_rate=None)  # a reference without audio
    out = tmp_path / "m.json"
    assert cli_main(["eval", "--generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref.mp4"),
                     "--out", str(out), "--sync-expert", "", "--no-progress"]) == 0
    cap = capsys.readouterr()
    _assert_listed(cap.err, "eval", bad)
    assert cap.out.strip().splitlines()[-1] == "avatarv eval: 1 of 3 clips scored, 2 rejected"
    rows = {r["clip"]: r for r in json.loads(out.read_text())["clips"]}
    assert rows["good"]["n_frames"] == 40 and "error" not in rows["good"] and rows["garbage"]["error"]


# ------------------------------------------------------------------------------------------------ ingest
def test_ingest_that_ingests_nothing_exits_non_zero_naming_each_file(tmp_path, capsys):
    bad = _bad_files(tmp_path / "in")
    assert cli_main(["ingest", "--in", str(tmp_path / "in"), "--out", str(tmp_path / "c"), "--no-progress"]) == 1
    cap = capsys.readouterr()
    _assert_listed(cap.err, "ingest", bad)
    assert "avatarv ingest: 0 of 2 files ingested, 2 rejected" in cap.out


def test_ingest_partial_batch(tmp_path, capsys):
    bad = _bad_files(tmp_path / "in")
    write_clip(tmp_path / "in" / "phone.mov", fps=NTSC, rotation=-90, sample_rate=48000, channels=2)
    assert cli_main(["ingest", "--in", str(tmp_path / "in"), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    cap = capsys.readouterr()
    _assert_listed(cap.err, "ingest", bad)
    assert cap.out.strip().splitlines()[-1] == "avatarv ingest: 1 of 3 files ingested, 2 rejected"
    assert len(pd.read_parquet(tmp_path / "c" / "rejected.parquet")) == 2
    row = pd.read_parquet(tmp_path / "c" / "manifest.parquet").iloc[0]
    info = probe(tmp_path / "c" / row.path)
    assert (info.rate, info.sample_rate, info.width, info.height) == (25, 16000, 48, 64)  # portrait, working rate
    flags = json.loads(row["flags"])
    assert (flags["source_rate"], flags["rotation"], flags["source_sample_rate"], flags["source_channels"]) == \
        ("30000/1001", 270, 48000, 2)


# ------------------------------------------------------------------------------------------------ curate
def test_curate_that_keeps_nothing_exits_non_zero_naming_each_file(tmp_path, capsys):
    bad = _bad_files(tmp_path / "corpus" / "clips")
    assert cli_main(["curate", "--in", str(tmp_path / "corpus"), "--out", str(tmp_path / "o"), "--workers", "1"]) == 1
    cap = capsys.readouterr()
    _assert_listed(cap.err, "curate", bad)
    assert all(r.startswith("container: ") for r in _rejections(cap.err, "curate").values())
    assert "avatarv curate: 0 of 2 clips kept, 2 rejected" in cap.out
    assert len(pd.read_parquet(tmp_path / "o" / "clips.parquet")) == 2


# ------------------------------------------------------------------------------------------------ study export
@pytest.fixture
def corpus(tmp_path):
    d = tmp_path / "corpus"
    rows = []
    for ident in range(2):
        for scene in range(2):
            cid = f"id{ident:03d}_s{scene}_c0"
            grey = np.full((8, 32, 32, 3), 40 + 50 * (2 * ident + scene), np.uint8)
            write_video(d / "clips" / f"{cid}.mp4", grey, 25, np.zeros(5120, np.float32), 16000)
            rows.append({"clip_id": cid, "path": f"clips/{cid}.mp4", "identity": f"id{ident:03d}", "scene": scene,
                         "split": "train", "distractor": ""})
    pd.DataFrame(rows).to_parquet(d / "manifest.parquet")
    return d


def test_study_export_partial_import_normalises_and_lists_rejections(corpus, tmp_path, capsys, tiny_cfg):
    gen = tmp_path / "gen"
    bad = {gen / "id001_s0_c0.mp4": "not a readable media container"}
    write_clip(gen / "id000_s0_c0.mp4", fps=NTSC, seconds=0.4, size=(32, 32), sample_rate=48000, channels=2)
    gen.joinpath("id001_s0_c0.mp4").write_bytes(b"not an mp4" * 30)
    out = tmp_path / "bundle"
    assert cli_main(["study", "export", "--corpus", str(corpus), "--out", str(out), "--generated", f"sysA={gen}"]) == 0
    cap = capsys.readouterr()
    _assert_listed(cap.err, "study export", bad)
    assert cap.out.strip().splitlines()[-1] == "avatarv study export: 1 of 2 generated videos imported, 1 rejected"
    assert list(pd.read_csv(out / "rejected.csv").file) == [str(gen / "id001_s0_c0.mp4")]
    media = pd.read_csv(out / "media.csv")
    generated = media[media.source == "sysA/id000_s0_c0.mp4"].file.iloc[0]
    info = probe(out / generated)  # re-encoded to the corpus's format: the rate cannot tell generated from real
    assert (info.rate, info.sample_rate, info.channels) == (25, 16000, 1)


def test_study_export_that_imports_nothing_exits_non_zero(corpus, tmp_path, capsys):
    bad = _bad_files(tmp_path / "gen")
    out = tmp_path / "bundle"
    assert cli_main(["study", "export", "--corpus", str(corpus), "--out", str(out), "--generated",
                     f"sysA={tmp_path / 'gen'}"]) == 1
    cap = capsys.readouterr()
    _assert_listed(cap.err, "study export", bad)
    assert "avatarv study export: 0 of 2 generated videos imported, 2 rejected" in cap.out
    assert not out.exists()  # nothing half-written


def test_batch_reason_drops_the_file_name_it_repeats():
    from avatarv.batch import reason_of
    from avatarv.errors import MediaError

    assert reason_of("a.mp4", MediaError("a.mp4", "file is empty")) == "file is empty"
    assert reason_of("a.mp4", MediaError("ref.png", "no face")) == "ref.png: no face"
    assert reason_of("a.mp4", "a.mp4: no reference with the same name") == "no reference with the same name"
    assert dataclasses.is_dataclass(__import__("avatarv.batch", fromlist=["Rejection"]).Rejection)
