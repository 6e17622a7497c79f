"""The embedded corpus end to end on a tiny spec: manifest contract, decodable media, every distractor kind
detectable from its ground truth, lips following the audio, byte-determinism (also across worker counts and
corpus sizes)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from avatarv.cli import main as cli_main
from avatarv.data.distractors import KINDS
from avatarv.data.synthesize import CorpusSpec, manifest_schema, synthesize_corpus
from avatarv.errors import MediaError
from avatarv.media import probe, read_video

SIZE, SECONDS, SEED = 96, 2.0, 7
CONTRACT = ["clip_id", "path", "identity", "identity_source", "scene", "scene_key", "split", "voice", "pitch", "speed",
            "language", "text", "phonemes", "fps", "width", "height", "n_frames", "duration", "sample_rate", "face_box",
            "landmarks", "head_pose", "head_shift", "mouth_open", "mouth_width", "blink", "brow", "audio_energy",
            "motion_style", "distractor", "av_offset_frames", "flags"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    spec = CorpusSpec(identities=3, scenes=2, clips_per_scene=1, seconds=SECONDS, size=SIZE, seed=SEED,
                      distractor_fraction=len(KINDS) / 6, holdout_identities=1)
    summary = synthesize_corpus(out, spec, workers=2, progress=False)
    return out, pd.read_parquet(out / "manifest.parquet"), summary


def _row(m, kind):
    return m[m.distractor == kind].iloc[0]


def _clean(m, ident, scene=None):
    c = m[(m.distractor == "") & (m.identity == ident)]
    return c[c.scene == scene].iloc[0] if scene is not None and (c.scene == scene).any() else c.iloc[0]


def test_manifest_contract(corpus):
    out, m, summary = corpus
    assert list(m.columns)[: len(CONTRACT)] == CONTRACT and set(manifest_schema().names) == set(m.columns)
    assert len(m) == summary["clips"] == 6 + len(KINDS)
    assert m.clip_id.is_unique and list(m.clip_id) == sorted(m.clip_id)
    assert set(m.distractor) == {"", *KINDS}
    clean = m[m.distractor == ""]
    assert set(clean.clip_id) == {f"id{i:03d}_s{s}_c0" for i in range(3) for s in range(2)}
    assert (m.split == np.where(m.identity == "id002", "holdout", "train")).all()
    for _, r in m.iterrows():
        n = r.n_frames
        assert (out / r.path).exists() and r.path == f"clips/{r.clip_id}.mp4"
        assert r.scene_key == f"{r.identity}_s{r.scene}" and r.fps == 25 and abs(r.duration - n / 25) < 1e-6
        for col in ("face_box", "landmarks", "head_pose", "head_shift", "mouth_open", "mouth_width", "blink", "brow",
                    "audio_energy"):
            assert len(r[col]) == n, col
        if r.distractor != "no_face":
            assert all(len(b) == 4 for b in r.face_box) and all(len(lm) == 136 for lm in r.landmarks)
        assert all(len(p) == 3 for p in r.head_pose) and all(len(s) == 2 for s in r.head_shift)
        assert 0 <= min(r.mouth_open) and max(r.mouth_open) <= 1 and 0 <= min(r.blink) and max(r.blink) <= 1
        ph = json.loads(r.phonemes)
        assert ph and all(set(p) == {"ph", "start", "end"} and 0 <= p["start"] < p["end"] <= r.duration + 1e-6 for p in ph)
        assert isinstance(json.loads(r["flags"]), dict) and {"sway_amp", "blink_rate", "mouth_scale"} <= set(json.loads(r.motion_style))
        assert r.identity_source.startswith("photo:") or r.identity_source == "procedural"


def test_clean_clips_are_h264_aac_at_the_contract_rates(corpus):
    out, m, _ = corpus
    for _, r in m[m.distractor == ""].iterrows():
        info = probe(out / r.path)
        assert (info.video_codec, info.audio_codec, info.fps, info.sample_rate) == ("h264", "aac", 25.0, 16000)
        v = read_video(out / r.path, need_audio=True)
        assert v.frames.shape == (r.n_frames, SIZE, SIZE, 3) and (r.width, r.height) == (SIZE, SIZE)
        assert abs(len(v.audio) - r.n_frames * 640) <= 1024


def test_identity_carries_voice_and_motion_style_across_scenes(corpus):
    _, m, _ = corpus
    per = m[m.distractor == ""].groupby("identity").agg({"motion_style": "nunique", "voice": "nunique", "scene": "nunique"})
    assert (per.motion_style == 1).all() and (per.voice == 1).all() and (per.scene == 2).all()
    styles = m[m.distractor == ""].drop_duplicates("identity").motion_style
    assert styles.nunique() == 3


def test_ground_truth_landmarks_show_the_mouth_opening(corpus):
    from avatarv.faces import mouth_opening

    _, m, _ = corpus
    for _, r in m[m.distractor == ""].iterrows():
        gap = [mouth_opening(np.asarray(lm).reshape(68, 2)) for lm in r.landmarks]
        assert np.corrcoef(gap, r.mouth_open)[0, 1] > 0.95


def test_lips_follow_the_audio(corpus):
    _, m, _ = corpus
    corr = [np.corrcoef(r.mouth_open, r.audio_energy)[0, 1] for _, r in m[m.distractor == ""].iterrows()]
    assert np.mean(corr) > 0.25 and min(corr) > 0.0


def _best_lag(mouth, energy, max_lag=10):
    mouth, energy = np.asarray(mouth), np.asarray(energy)
    score = {k: np.corrcoef(mouth[: len(mouth) - k], energy[k:])[0, 1] for k in range(max_lag + 1)}
    return max(score, key=score.get)


def test_av_offset_is_measurable(corpus):
    out, m, _ = corpus
    r = _row(m, "av_offset")
    k = r.av_offset_frames
    assert 3 <= k <= 8 and abs(json.loads(r["flags"])["audio_delay_s"] - k / 25) < 1e-9
    audio = read_video(out / r.path, need_audio=True).audio
    assert np.abs(audio[: k * 640 - 200]).max() < 0.02  # the delay is leading silence
    assert abs(_best_lag(r.mouth_open, r.audio_energy) - k) <= 1
    assert json.loads(r.phonemes)[0]["start"] >= k / 25 - 1e-6


def test_audio_faults(corpus):
    out, m, _ = corpus
    silent = read_video(out / _row(m, "silence").path, need_audio=True).audio
    assert np.sqrt(np.mean(silent**2)) < 1e-3
    noise = _row(m, "noise_audio")
    e = np.asarray(noise.audio_energy)
    speech = np.asarray(_clean(m, noise.identity).audio_energy)
    assert e.mean() > 0.05 and e.std() / e.mean() < 0.25 < speech.std() / speech.mean()
    na = _row(m, "no_audio")
    assert not probe(out / na.path).has_audio and na.sample_rate == 0 and max(na.audio_energy) == 0


def test_file_and_picture_faults(corpus):
    import cv2

    out, m, _ = corpus
    with pytest.raises(MediaError):
        read_video(out / _row(m, "truncated").path)
    lr = _row(m, "low_res")
    assert probe(out / lr.path).width == lr.width == SIZE // 4
    blur = _row(m, "blur")
    sharp = lambda r: cv2.Laplacian(cv2.cvtColor(read_video(out / r.path).frames[10], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    assert sharp(blur) < 0.2 * sharp(_clean(m, blur.identity, blur.scene))


def test_scene_cut_is_at_the_flagged_frame(corpus):
    out, m, _ = corpus
    r = _row(m, "scene_cut")
    f = read_video(out / r.path).frames.astype(np.float32)
    diff = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))
    cut = json.loads(r["flags"])["cut_frame"]
    assert int(np.argmax(diff)) + 1 == cut and diff[cut - 1] > 4 * np.median(diff)


def test_face_count_faults_seen_by_a_real_detector(corpus):
    from avatarv.faces import detect_faces

    out, m, _ = corpus
    mid = lambda r: read_video(out / r.path).frames[r.n_frames // 2]
    nf = _row(m, "no_face")
    assert all(len(b) == 0 for b in nf.face_box) and len(detect_faces(mid(nf), "mediapipe")) == 0
    two = _row(m, "two_faces")
    assert len(detect_faces(mid(two), "mediapipe", min_confidence=0.4)) == 2
    assert json.loads(two["flags"])["second_identity"] != two.identity
    for _, r in m[m.distractor == ""].iterrows():
        assert len(detect_faces(mid(r), "mediapipe")) == 1, r.clip_id


def test_wrong_identity_is_flagged_and_looks_like_the_impostor(corpus):
    out, m, _ = corpus
    r = _row(m, "wrong_identity")
    true = json.loads(r["flags"])["true_identity"]
    assert true != r.identity
    mid = lambda row: read_video(out / row.path).frames[row.n_frames // 2].astype(np.float32)

    def face(row):
        x0, y0, x1, y1 = (int(round(v)) for v in row.face_box[row.n_frames // 2])
        import cv2

        return cv2.resize(mid(row)[max(y0, 0) : y1, max(x0, 0) : x1], (32, 32))

    w = face(r)
    # the face pixels resemble the impostor's own clips more than the labelled person's (same scene light differs,
    # so compare mean-normalised crops)
    norm = lambda a: (a - a.mean()) / (a.std() + 1e-6)
    d_true = np.abs(norm(w) - norm(face(_clean(m, true)))).mean()
    d_label = np.abs(norm(w) - norm(face(_clean(m, r.identity, r.scene)))).mean()
    assert d_true < d_label


def test_byte_determinism_across_runs_workers_and_corpus_size(corpus, tmp_path, capsys):
    out, _, _ = corpus
    args = ["synth", "--identities", "2", "--scenes", "1", "--clips-per-scene", "1", "--seconds", str(SECONDS),
            "--size", str(SIZE), "--seed", str(SEED), "--distractor-fraction", "0", "--quiet"]
    assert cli_main([*args, "--out", str(tmp_path / "a"), "--workers", "2"]) == 0, capsys.readouterr().err[-500:]
    assert cli_main([*args, "--out", str(tmp_path / "b"), "--workers", "1"]) == 0, capsys.readouterr().err[-500:]
    for name in ("manifest.parquet", "clips/id000_s0_c0.mp4", "clips/id001_s0_c0.mp4"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in ("clips/id000_s0_c0.mp4", "clips/id001_s0_c0.mp4"):  # a clip does not depend on the corpus size
        assert (tmp_path / "a" / name).read_bytes() == (out / name).read_bytes(), name
