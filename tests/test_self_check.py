"""The self-check on every output (inference/self_check.py) and `avatarv generate` on footage framed as real footage
is (16:9, small face, 24 fps): the face pasted back at the source's size and rate, the one-line check printed and the
provenance sidecar written."""

import hashlib
import json

import numpy as np
import pytest
from _footage_fixtures import footage
from _inference_fixtures import tiny_pipeline, tiny_pipeline_parts

from avatarv.inference.self_check import SAME_PERSON, self_check
from avatarv.media import probe, read_video, write_video


@pytest.fixture(scope="module")
def person():
    return footage(identity=21, seconds=1.0, fps=24, face_fraction=0.22, seed=0)


def test_same_person_passes_and_another_person_is_farther(person):
    own = footage(identity=21, seconds=0.5, face_fraction=0.18, seed=5, background=1)
    other = footage(identity=20, seconds=0.5, face_fraction=0.18, seed=5, background=1)
    same = self_check(own.frames, person.frames[0], n_frames=4)
    diff = self_check(other.frames, person.frames[0], n_frames=4)
    assert same.face_found_frac == 1.0 and same.identity_distance < SAME_PERSON and same.ok
    assert diff.face_found_frac == 1.0 and diff.identity_distance > same.identity_distance
    assert "— ok" in same.summary()


def test_no_face_is_a_warning(person):
    blank = np.full((5, 360, 640, 3), 128, np.uint8)
    check = self_check(blank, person.frames[0])
    assert check.face_found_frac == 0.0 and check.identity_distance is None and not check.ok
    assert "WARNING: the output may not show the reference's face" in check.summary()
    assert check.to_dict()["ok"] is False


def test_generate_on_footage_pastes_back_at_the_source_size_and_rate(person, tmp_path, capsys):
    from avatarv.cli import main

    ckpt = tmp_path / "final"
    tiny_pipeline(tiny_pipeline_parts(), audio=True, reference=True, motion=False).save_pretrained(ckpt)
    ref = write_video(tmp_path / "ref.mp4", person.frames, 24, person.audio, person.sample_rate)
    speech = tmp_path / "speech.wav"
    from avatarv.media import write_wav

    write_wav(speech, person.audio[: 16000 * 8 // 10], 16000)
    out = tmp_path / "out.mp4"
    assert main(["generate", "--ref", str(ref), "--audio", str(speech), "--out", str(out), "--checkpoint", str(ckpt),
                 "--steps", "1", "--no-progress", "--i-have-consent"]) == 0
    info = probe(out)
    assert (info.width, info.height) == (640, 360) and info.rate == 24 and info.n_frames == round(0.8 * 24)
    frames, source = read_video(out).frames, read_video(ref).frames
    # outside the blended face region the output IS the reference's frames (paste-back, not a re-render), up to
    # one more H.264 encode; the face region is not
    corner = np.abs(frames[:, :40, :40].astype(float) - source[: len(frames), :40, :40].astype(float)).mean()
    assert corner < 3.0
    printed = capsys.readouterr().out
    assert "640x360" in printed and "self-check: face in" in printed
    side = json.loads((tmp_path / "out.json").read_text())
    assert side["ai_generated"] and side["crop"] == "face" and side["checkpoint"] == str(ckpt)
    assert side["reference_sha256"] == hashlib.sha256(ref.read_bytes()).hexdigest()
    assert set(side["self_check"]) >= {"face_found_frac", "identity_distance", "ok", "judge"}
    from avatarv.inference.verify import verify

    found = verify(out)  # the mp4 itself says where it came from, and the pictures carry the watermark
    assert found["watermark"] and found["tags"]["avatarv_model_hash"] == side["model_hash"]
    assert found["tags"]["avatarv_reference_sha256"] == side["reference_sha256"]
    # --crop full keeps the model's own square output
    assert main(["generate", "--ref", str(ref), "--audio", str(speech), "--out", str(out), "--checkpoint", str(ckpt),
                 "--steps", "1", "--no-progress", "--i-have-consent", "--crop", "full"]) == 0
    assert (probe(out).width, probe(out).height) == (32, 32)
