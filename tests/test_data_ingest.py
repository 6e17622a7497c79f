"""`avatarv ingest`: real videos of any rate/size become corpus clips (25 fps, 16 kHz mono AAC, even sizes) with an
empty ground truth; unusable files become rejection rows and the batch goes on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from avatarv.cli import main as cli_main
from avatarv.data.ingest import ingest_folder
from avatarv.errors import InputError
from avatarv.media import probe, read_video, write_video


@pytest.fixture
def footage(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    rng = np.random.default_rng(0)
    sr = 44100
    frames = np.zeros((45, 75, 101 + 1, 3), np.uint8)  # 30 fps, 1.5 s, odd height
    for i in range(45):
        frames[i, :, : (i * 2) % 100] = 180
    # write at 30 fps with 44.1 kHz audio (a sine whose loudness steps up at 0.75 s)
    t = np.arange(int(1.5 * sr)) / sr
    audio = (np.where(t < 0.75, 0.05, 0.4) * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    write_video(d / "talk 30fps.mp4", frames[:, :74], fps=30, audio=audio, sample_rate=sr)
    write_video(d / "silent_film.mp4", rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8), fps=25)
    (d / "notes.mp4").write_bytes(b"not a video")
    good = (d / "talk 30fps.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(good[: len(good) // 3])
    (d / "readme.txt").write_text("ignored")
    return d


def test_ingest_normalises_and_rejects(footage, tmp_path):
    out = tmp_path / "corpus"
    summary = ingest_folder(footage, out, progress=False)
    assert summary == {"files": 4, "ingested": 2, "rejected": 2}
    m = pd.read_parquet(out / "manifest.parquet")
    rej = pd.read_parquet(out / "rejected.parquet")
    assert sorted(rej.clip_id) == ["ext_cut", "ext_notes"] and rej.reason.str.len().min() > 5
    r = m.set_index("clip_id").loc["ext_talk_30fps"]
    info = probe(out / r.path)
    assert (info.fps, info.sample_rate, info.video_codec, info.audio_codec) == (25.0, 16000, "h264", "aac")
    assert (r.width, r.height) == (102, 74) and r.n_frames == 37 and not r.has_ground_truth
    v = read_video(out / r.path, need_audio=True)
    assert len(v.frames) == 37 and abs(len(v.audio) - 37 * 640) <= 1024
    e = np.asarray(r.audio_energy)
    assert len(e) == 37 and e[25:].mean() > 4 * e[:15].mean()  # the loudness step survives resampling
    assert len(r.face_box) == 37 and all(len(b) == 0 for b in r.face_box) and len(r.mouth_open) == 0
    assert json.loads(r["flags"])["source_fps"] == 30.0
    silent = m.set_index("clip_id").loc["ext_silent_film"]
    assert silent.sample_rate == 0 and not probe(out / silent.path).has_audio


def test_ingest_square_resize_and_cli(footage, tmp_path):
    out = tmp_path / "sq"
    assert cli_main(["ingest", "--in", str(footage), "--out", str(out), "--size", "48"]) == 0
    m = pd.read_parquet(out / "manifest.parquet")
    assert set(zip(m.width, m.height)) == {(48, 48)}


def test_ingest_refuses_an_empty_or_missing_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        ingest_folder(tmp_path / "nope", tmp_path / "o", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        ingest_folder(tmp_path / "empty", tmp_path / "o", progress=False)
