"""The demo app's API (FastAPI TestClient) on a tiny untrained pipeline: upload → job → progress → the result mp4
(speech muxed, the length of the speech, at the reference's size) and its provenance sidecar; every bad upload
refused in one line naming the user's file and the problem, with nothing left behind."""

import html as html_lib
import json
import time

import numpy as np
import pytest
from _demo_fixtures import SPEECH_SECONDS, demo_media, saved_tiny_pipeline
from fastapi.testclient import TestClient

from avatarv.demo.app import create_app
from avatarv.errors import AvatarVError

LIMIT = 2 * 2**20
CONSENT = {"consent": True, "who": "Ada Example"}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return demo_media(tmp_path_factory.mktemp("demo_media"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return saved_tiny_pipeline(tmp_path_factory.mktemp("demo_ckpt") / "final")


@pytest.fixture
def client(checkpoint, tmp_path):
    app = create_app(checkpoint, tmp_path / "work", steps=1, max_upload_bytes=LIMIT)
    with TestClient(app) as c:
        c.workdir = tmp_path / "work"
        yield c


def _upload(client, kind, path, name=None):
    return client.post(f"/upload/{kind}", params={"name": name or path.name}, content=path.read_bytes(),
                       headers={"Content-Type": "application/octet-stream"})


def _wait(client, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = client.get(f"/jobs/{job_id}/status").json()
        if s["state"] in ("done", "failed"):
            return s
        time.sleep(0.1)
    pytest.fail(f"job {job_id} still {s['state']} after {timeout} s")


def test_upload_job_progress_result(client, media):
    from avatarv.cli import main
    from avatarv.inference.verify import verify
    from avatarv.media import probe, read_video

    page = client.get("/")
    assert page.status_code == 200 and 'id="reference"' in page.text and 'id="speech"' in page.text
    ref = _upload(client, "reference", media / "person.mp4")
    speech = _upload(client, "speech", media / "speech.wav")
    assert ref.status_code == 200 and ref.json()["summary"] == "640x360, 20 frames"
    assert speech.status_code == 200 and speech.json()["summary"].startswith(f"{SPEECH_SECONDS:.2f} s")

    runner = client.app.state.runner
    seen = []  # every progress value the page could have polled, in order
    set_ = runner._set
    runner._set = lambda job, p, stage: (seen.append((p, stage)), set_(job, p, stage))
    r = client.post("/jobs", json={"reference": ref.json()["upload"], "speech": speech.json()["upload"], **CONSENT})
    assert r.status_code == 200 and r.json()["url"] == f"/jobs/{r.json()['job']}"
    job_id = r.json()["job"]
    status = _wait(client, job_id)
    assert status["state"] == "done" and status["progress"] == 1.0 and status["error"] is None
    values = [p for p, _ in seen]
    assert values == sorted(values) and 0 < values[0] and values[-1] < 1
    # steps=1 and 0.8 s of speech = 20 frames → 6 latent frames → two chunks of 4 (bridge 1): 2 denoising steps
    assert [s for _, s in seen if s.startswith("generating")] == ["generating: step 1 of 2", "generating: step 2 of 2"]

    video = client.get(f"/jobs/{job_id}/video")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    out = client.workdir / "jobs" / job_id / f"avatarv-{job_id}.mp4"
    assert video.content == out.read_bytes()
    info = probe(out)
    assert info.has_audio and (info.width, info.height) == (640, 360) and info.n_frames == round(SPEECH_SECONDS * 25)
    download = client.get(f"/jobs/{job_id}/download")
    assert download.content == video.content
    assert download.headers["content-disposition"] == f'attachment; filename="avatarv-{job_id}.mp4"'
    side = client.get(f"/jobs/{job_id}/sidecar.json").json()
    assert side == json.loads(out.with_suffix(".json").read_text())
    assert side["ai_generated"] and side["crop"] == "face" and side["fps"] == "25"
    assert side["uploaded_as"] == {"reference": "person.mp4", "audio": "speech.wav"}
    assert side["consent"]["reference"]["source"] == "record" and side["consent"]["reference"]["who"] == "Ada Example"
    assert set(side["self_check"]) >= {"face_found_frac", "identity_distance", "ok"}
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        ["reference.mp4", "reference.mp4.consent.json", "speech.wav", out.name, out.with_suffix(".json").name])  # no temp files
    assert side["watermark"] and verify(out)["watermark"] and verify(out)["tags"]["avatarv_model_hash"] == side["model_hash"]

    # the same inputs, seed and steps through `avatarv generate`: the same video and the same provenance fields
    cli_out = client.workdir / "cli.mp4"
    assert main(["generate", "--ref", str(media / "person.mp4"), "--audio", str(media / "speech.wav"), "--out",
                 str(cli_out), "--checkpoint", str(client.app.state.runner.checkpoint), "--steps", "1", "--seed", "0",
                 "--no-refine", "--no-progress", "--i-have-consent"]) == 0
    assert np.array_equal(read_video(cli_out).frames, read_video(out).frames)
    cli_side = json.loads(cli_out.with_suffix(".json").read_text())
    assert set(side) - set(cli_side) == {"uploaded_as"} and not set(cli_side) - set(side)
    assert side["self_check"] == cli_side["self_check"] and side["model_hash"] == cli_side["model_hash"]
    assert side["reference_sha256"] == cli_side["reference_sha256"]  # the stored upload is the user's file, byte for byte

    html = client.get(f"/jobs/{job_id}").text
    assert status["self_check"].startswith("self-check: face in ") and status["self_check"] in html_lib.unescape(html)
    assert f'href="/jobs/{job_id}/download"' in html and f'src="/jobs/{job_id}/video"' in html
    assert not list((client.workdir / "uploads").iterdir())  # uploads moved into the job


def test_pipeline_reports_every_step_to_a_callable(checkpoint, media):
    from avatarv.inference.inputs import read_reference, read_speech
    from avatarv.inference.pipeline import load_pipeline

    pipe = load_pipeline(checkpoint)
    calls = []
    frames = read_reference(media / "person.png").frames
    audio, sr = read_speech(media / "speech.wav")
    pipe(frames, audio, sr, num_inference_steps=2, progress=lambda d, t: calls.append((d, t)), crop="face")
    assert calls == [(k, 4) for k in range(1, 5)]  # 2 chunks x 2 steps


@pytest.mark.parametrize("kind, file, status, message", [
    ("reference", "notes.txt", 415, "notes.txt: not a video or image (.txt; accepted: "),
    ("reference", "broken.mp4", 422, "broken.mp4: "),
    ("reference", "wall.png", 422, "wall.png: no face found in the reference"),
    ("reference", "big.png", 413, "big.png: file too large (3.0 MB; the limit is 2.0 MB)"),
    ("speech", "notes.txt", 415, "notes.txt: not an audio or video file (.txt; accepted: "),
    ("speech", "mute.mp4", 422, "mute.mp4: no audio stream"),
    ("speech", "silence.wav", 422, "silence.wav: audio is silent"),
    ("speech", "empty.wav", 422, "empty.wav: empty file"),
])
def test_bad_upload_one_line_naming_the_file(client, media, tmp_path, kind, file, status, message):
    path = media / file
    if file == "big.png":
        path = tmp_path / file
        path.write_bytes(np.zeros(3 * 2**20, np.uint8).tobytes())
    r = _upload(client, kind, path)
    err = r.json()["error"]
    assert r.status_code == status and err.startswith(message) and "\n" not in err
    assert f"{kind}." not in err.split(": ", 1)[1]  # the user's file is named, not the stored copy
    assert not list((client.workdir / "uploads").iterdir()) if (client.workdir / "uploads").exists() else True


def test_upload_without_length_is_cut_at_the_limit(client):
    """A chunked body (no Content-Length) is counted as it arrives and refused once it passes the limit."""
    def body():
        for _ in range(5):
            yield b"\0" * 2**19

    r = client.post("/upload/speech", params={"name": "long.wav"}, content=body())
    assert r.status_code == 413 and r.json()["error"] == "long.wav: file too large (over the limit of 2.0 MB)"
    assert not list((client.workdir / "uploads").iterdir())


def test_unknown_ids_and_bad_requests(client, media):
    assert client.post("/upload/script", params={"name": "a.mp4"}, content=b"x").status_code == 404
    ref = _upload(client, "reference", media / "person.png").json()["upload"]
    r = client.post("/jobs", json={"reference": ref, "speech": ref, **CONSENT})  # an id of the wrong kind
    assert r.status_code == 404 and r.json()["error"].startswith("no uploaded speech with that id")
    assert client.post("/jobs", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.get("/jobs/nope/status").status_code == 404
    assert "no job &#39;nope&#39;" in client.get("/jobs/nope").text
    assert client.get("/jobs/nope/video").status_code == 404
    r = _upload(client, "reference", media / "person.png", name="../../etc/passwd.png")
    assert r.json()["name"] == "passwd.png"  # only the last component of a name is kept, and only for messages


def test_a_job_needs_the_consent_of_the_person(client, media):
    ref = _upload(client, "reference", media / "person.png").json()["upload"]
    speech = _upload(client, "speech", media / "speech.wav").json()["upload"]
    for bad in ({}, {"consent": True}, {"consent": True, "who": "  "}, {"consent": "yes", "who": "Ada"},
                {"consent": False, "who": "Ada"}):
        r = client.post("/jobs", json={"reference": ref, "speech": speech, **bad})
        assert r.status_code == 422 and r.json()["error"].startswith("consent missing"), bad
    assert not (client.workdir / "jobs").exists() and not client.app.state.runner.jobs  # nothing queued or kept
    assert client.post("/jobs", json={"reference": ref, "speech": speech, **CONSENT}).status_code == 200
    assert 'id="consent"' in client.get("/").text


def test_refuses_a_folder_without_a_pipeline(tmp_path):
    with pytest.raises(AvatarVError, match="no saved pipeline"):
        create_app(tmp_path, tmp_path / "work")


def test_a_failed_job_shows_its_one_line_error(client, media, monkeypatch):
    from avatarv.errors import InputError

    def fail(job):
        raise InputError(job.reference_name, "no face found in the reference")

    monkeypatch.setattr(client.app.state.runner, "_generate", fail)
    ref = _upload(client, "reference", media / "person.png").json()["upload"]
    speech = _upload(client, "speech", media / "speech.wav").json()["upload"]
    job_id = client.post("/jobs", json={"reference": ref, "speech": speech, **CONSENT}).json()["job"]
    s = _wait(client, job_id)
    assert s["state"] == "failed" and s["error"] == "person.png: no face found in the reference"
    assert 'id="error">person.png: no face found in the reference<' in client.get(f"/jobs/{job_id}").text
    assert client.get(f"/jobs/{job_id}/video").status_code == 409


def test_cli_without_a_checkpoint_is_one_line(tmp_path, capsys):
    from avatarv.cli import main

    assert main(["demo", "--checkpoint", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{tmp_path / 'nope'}: no trained checkpoint" in err and len(err.splitlines()) == 1


def test_with_a_refiner_the_demo_matches_generate(checkpoint, media, tmp_path):
    """A saved refiner (stage 08's output) is used as `avatarv generate --refiner` uses it: the same frames."""
    from avatarv.cli import main
    from avatarv.media import read_video
    from avatarv.models.refiner import RefinerModel

    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    refiner = RefinerModel(factor=2, in_size=[32, 32], patch=4, hidden=32, layers=1, heads=2, window=1).eval()
    with torch.no_grad():  # the head starts at zero (a bicubic identity); random weights make the network show
        for p in refiner.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    refiner.save_pretrained(tmp_path / "refiner")
    app = create_app(checkpoint, tmp_path / "work", refiner=tmp_path / "refiner", steps=1)
    with TestClient(app) as c:
        ref = _upload(c, "reference", media / "person.png").json()["upload"]
        speech = _upload(c, "speech", media / "speech.wav").json()["upload"]
        job_id = c.post("/jobs", json={"reference": ref, "speech": speech, **CONSENT}).json()["job"]
        s = _wait(c, job_id)
    assert s["state"] == "done" and "(refined)" in s["summary"]
    cli_out = tmp_path / "cli.mp4"
    assert main(["generate", "--ref", str(media / "person.png"), "--audio", str(media / "speech.wav"), "--out",
                 str(cli_out), "--checkpoint", str(checkpoint), "--refiner", str(tmp_path / "refiner"), "--steps", "1",
                 "--seed", "0", "--no-progress", "--i-have-consent"]) == 0
    demo = read_video(tmp_path / "work" / "jobs" / job_id / f"avatarv-{job_id}.mp4").frames
    assert np.array_equal(demo, read_video(cli_out).frames)
    unrefined = tmp_path / "plain.mp4"
    assert main(["generate", "--ref", str(media / "person.png"), "--audio", str(media / "speech.wav"), "--out",
                 str(unrefined), "--checkpoint", str(checkpoint), "--no-refine", "--steps", "1", "--seed", "0",
                 "--no-progress", "--i-have-consent"]) == 0
    assert not np.array_equal(demo, read_video(unrefined).frames)  # the refiner really acted
