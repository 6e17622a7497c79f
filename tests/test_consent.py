"""Consent records: bound to the reference's bytes, required by generate / adapt / speak unless asserted by flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from avatarv.cli import main
from avatarv.errors import InputError, MediaError
from avatarv.inference.consent import FLAG, consent_path, find_consent, record_consent, require_consent


@pytest.fixture
def ref(tmp_path):
    path = tmp_path / "person.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)
    return path


def test_record_is_bound_to_the_file(ref):
    assert find_consent(ref) is None
    rec = record_consent(ref, "  Ada   Example ")
    assert rec["who"] == "Ada Example" and rec["reference"] == "person.png" and len(rec["reference_sha256"]) == 64
    assert json.loads(consent_path(ref).read_text()) == rec == find_consent(ref)
    assert not [p for p in ref.parent.iterdir() if ".tmp-" in p.name]  # written atomically
    got = require_consent(ref, asserted=False)
    assert got["source"] == "record" and got["who"] == "Ada Example"
    # the same name, other bytes: the record no longer covers the file
    Image.fromarray(np.full((64, 64, 3), 129, np.uint8)).save(ref)
    with pytest.raises(InputError, match=r"person\.png\.consent\.json: this consent was recorded for other content"):
        require_consent(ref, asserted=True)  # a stale record is an error even with the flag, never ignored


def test_without_a_record_only_the_flag_lets_it_through(ref, tmp_path):
    with pytest.raises(InputError, match=rf"person\.png: no consent recorded .* or pass {FLAG}"):
        require_consent(ref, asserted=False)
    assert require_consent(ref, asserted=True)["source"] == FLAG
    with pytest.raises(MediaError, match="file not found"):
        require_consent(tmp_path / "nope.mp4", asserted=True)


@pytest.mark.parametrize("who", ["", "   ", "x" * 201, "Ada\x00"])
def test_a_record_must_name_someone(ref, who):
    with pytest.raises(InputError, match="--who must name"):
        record_consent(ref, who)
    assert not consent_path(ref).exists()


@pytest.mark.parametrize("content", ["{not json", json.dumps({"who": "Ada"}), json.dumps([1, 2])])
def test_a_broken_record_is_named(ref, content):
    consent_path(ref).write_text(content)
    with pytest.raises(InputError, match=r"person\.png\.consent\.json: unreadable consent record"):
        find_consent(ref)


def test_commands_refuse_a_reference_without_consent_in_one_line(ref, tmp_path, capsys):
    """Before any model loads: the refusal needs no checkpoint, voice model or adapter."""
    from avatarv.media.audio import write_wav

    speech = tmp_path / "speech.wav"
    write_wav(speech, (0.3 * np.sin(np.linspace(0, 2000, 16000))).astype(np.float32), 16000)
    for argv in (["generate", "--ref", str(ref), "--audio", str(speech), "--out", str(tmp_path / "o.mp4")],
                 ["adapt", "--ref", str(ref)],
                 ["speak", "--voice-ref", str(speech), "--text", "hello", "--out", str(tmp_path / "o.wav")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no consent recorded for this reference" in err, err
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.wav").exists()

    assert main(["consent", str(ref), "--who", "Ada Example"]) == 0
    assert "consent of Ada Example recorded" in capsys.readouterr().out
    # with the record, generate gets past consent to the next check (here: the face, which a grey square lacks)
    assert main(["generate", "--ref", str(ref), "--audio", str(speech), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "no face found in the reference" in capsys.readouterr().err
