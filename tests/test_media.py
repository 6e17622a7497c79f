"""Media I/O: round trips, byte determinism, and one-line named errors for every kind of bad file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from avatarv.errors import MediaError
from avatarv.media import load_audio, probe, read_video, write_video, write_wav


def _md5(p):
    return hashlib.md5(p.read_bytes()).hexdigest()


def test_round_trip_keeps_frames_audio_and_rate(tone_clip):
    path, frames, audio = tone_clip
    v = read_video(path, need_audio=True)
    assert v.frames.shape == frames.shape and v.fps == 25 and v.sample_rate == 16000
    assert np.abs(v.frames.astype(int) - frames).mean() < 6  # lossy but close
    n = len(audio)
    assert len(v.audio) >= n
    spec = np.abs(np.fft.rfft(v.audio[:n]))
    assert abs(np.argmax(spec) * 16000 / n - 440) < 2  # the tone survives AAC


def test_audio_is_not_shifted_by_the_codec(tmp_path):
    rng = np.random.default_rng(1)
    audio = np.zeros(32000, np.float32)
    audio[8000:8400] = rng.standard_normal(400) * 0.3
    write_video(tmp_path / "c.mp4", np.zeros((50, 32, 32, 3), np.uint8), 25, audio, 16000)
    got = read_video(tmp_path / "c.mp4", need_audio=True).audio
    lag = np.argmax(np.correlate(got[: len(audio) + 2048], audio, "full")) - (len(audio) - 1)
    assert lag == 0


def test_same_input_gives_same_bytes(tmp_path, tone_clip):
    _, frames, audio = tone_clip
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_video(a, frames, 25, audio, 16000)
    write_video(b, frames, 25, audio, 16000)
    assert _md5(a) == _md5(b)


def test_probe_reports_streams(tone_clip):
    info = probe(tone_clip[0])
    assert (info.width, info.height, info.n_frames, info.has_audio, info.video_codec) == (64, 64, 25, True, "h264")


@pytest.mark.parametrize(
    "make,problem",
    [
        (lambda p, src: None, "file not found"),
        (lambda p, src: p.write_bytes(b""), "file is empty"),
        (lambda p, src: p.write_bytes(b"this is not an mp4" * 100), "not a readable media container"),
        (lambda p, src: p.write_bytes(src.read_bytes()[:2000]), ""),
    ],
    ids=["missing", "empty", "garbage", "truncated"],
)
def test_bad_files_raise_one_line_named_errors(tmp_path, tone_clip, make, problem):
    bad = tmp_path / "bad.mp4"
    make(bad, tone_clip[0])
    with pytest.raises(MediaError) as e:
        read_video(bad)
    assert str(bad) in str(e.value) and problem in str(e.value) and "\n" not in str(e.value)


def test_missing_audio_stream_is_named(tmp_path):
    p = tmp_path / "mute.mp4"
    write_video(p, np.zeros((5, 32, 32, 3), np.uint8), 25)
    assert read_video(p).audio.size == 0
    with pytest.raises(MediaError, match="no audio stream"):
        read_video(p, need_audio=True)


def test_failed_write_leaves_nothing(tmp_path):
    p = tmp_path / "out.mp4"
    with pytest.raises(ValueError):
        write_video(p, np.zeros((3, 33, 33, 3), np.uint8), 25)  # odd size: refused
    assert not p.exists() and list(tmp_path.iterdir()) == []


def test_wav_round_trip_and_resample(tmp_path):
    audio = (0.5 * np.sin(2 * np.pi * 300 * np.arange(22050) / 22050)).astype(np.float32)
    write_wav(tmp_path / "s.wav", audio, 22050)
    got, sr = load_audio(tmp_path / "s.wav", 16000)
    assert sr == 16000 and abs(len(got) - 16000) <= 1
    assert abs(np.argmax(np.abs(np.fft.rfft(got))) * 16000 / len(got) - 300) < 2
