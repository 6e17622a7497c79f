"""The media normaliser (media/normalize.py) on footage as phones, cameras and TV clips give it: every common frame
rate, variable rate, rotation metadata, 8–48 kHz mono and stereo audio, no audio, odd sizes, other containers;
rational output rates. Fixtures are ≤ 64x48 px, ≤ 2 s (tests/_media_fixtures.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import yaml
from _media_fixtures import (
    BURSTS,
    H,
    W,
    burst_audio,
    ffmpeg,
    ffmpeg_clip,
    first_burst,
    time_of,
    timed_frame,
    write_clip,
)

from avatarv.errors import MediaError
from avatarv.media import (
    WORKING_FPS,
    WORKING_SAMPLE_RATE,
    as_rate,
    normalize_audio,
    normalize_video,
    probe,
    read_video,
    retime,
    write_video,
)
from avatarv.media.normalize import rate_index
from avatarv.paths import ROOT

CODING_S = 0.012  # grey-level coding error of a decoded frame's painted time (±1.2 levels of 100/s)
RATES = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(50),
         Fraction(60000, 1001)]
SAMPLE_RATES = [8000, 16000, 22050, 44100, 48000]


def _assert_retimed(v, source_interval: float):
    """Working-rate frame k shows the source frame nearest to k/25 s; the audio keeps the burst at its time."""
    shown = np.array([time_of(f) for f in v.frames])
    want = np.arange(len(shown)) / float(WORKING_FPS)
    assert np.abs(shown - want).max() <= source_interval / 2 + CODING_S, np.round(shown - want, 3)
    if len(v.audio):
        assert v.sample_rate == WORKING_SAMPLE_RATE
        assert abs(first_burst(v.audio, v.sample_rate) - BURSTS[0]) < 0.003


def test_working_rate_matches_params_yaml():
    corpus = yaml.safe_load((ROOT / "params.yaml").read_text())["corpus"]
    assert (WORKING_FPS, WORKING_SAMPLE_RATE) == (corpus["fps"], corpus["sample_rate"])


@pytest.mark.parametrize("text, rate", [
    (25, Fraction(25)), (23.976, Fraction(24000, 1001)), ("29.97", Fraction(30000, 1001)),
    (59.94, Fraction(60000, 1001)),
    ("30000/1001", Fraction(30000, 1001)), (np.float64(30000 / 1001), Fraction(30000, 1001)), (12.5, Fraction(25, 2)),
    (Fraction(48), Fraction(48)), ("24", Fraction(24)),
])
def test_as_rate_reads_every_way_of_writing_a_rate(text, rate):
    assert as_rate(text) == rate


@pytest.mark.parametrize("bad", [0, -25, "fast", "1/0", float("nan"), None])
def test_as_rate_refuses_nonsense(bad):
    with pytest.raises(ValueError, match="frame rate"):
        as_rate(bad)


@pytest.mark.parametrize("fps", RATES, ids=lambda r: f"{float(r):.3f}")
def test_every_common_rate_is_retimed_by_timestamp(tmp_path, fps):
    sr, ch = {0: (48000, 2), 1: (44100, 1)}[RATES.index(fps) % 2]
    path = write_clip(tmp_path / "clip.mp4", fps=fps, seconds=1.6, sample_rate=sr, channels=ch)
    v = normalize_video(path, need_audio=True)
    assert v.source_rate == fps and v.fps == 25.0 and (v.source_sample_rate, v.source_channels) == (sr, ch)
    n_src = round(1.6 * fps)
    assert len(v.frames) == int(n_src / fps * 25 + 1e-6) and v.frames.shape[1:] == (H, W, 3)
    _assert_retimed(v, 1 / float(fps))
    assert abs(len(v.audio) / 16000 - n_src / float(fps)) < 0.05


def test_working_rate_passes_through_unchanged(tmp_path):
    frames = np.stack([timed_frame(i / 25) for i in range(30)])
    audio = burst_audio(1.2, 16000)[0]
    path = write_video(tmp_path / "c.mp4", frames, 25, audio, 16000)
    raw, norm = read_video(path, need_audio=True), normalize_video(path, need_audio=True)
    assert np.array_equal(raw.frames, norm.frames) and np.array_equal(raw.audio, norm.audio)


def test_variable_frame_rate_is_retimed_by_timestamp(tmp_path):
    gaps = np.random.default_rng(0).uniform(0.02, 0.06, 80)  # 17–50 fps, as a phone under changing light
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    times = times[times < 1.6]
    v = normalize_video(write_clip(tmp_path / "vfr.mp4", times=times, sample_rate=48000, channels=2), need_audio=True)
    assert v.variable_rate and len(v.frames) == int((times[-1] + np.median(np.diff(times))) * 25 + 1e-6)
    _assert_retimed(v, gaps.max())


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_phone_rotation_metadata_gives_the_upright_picture_ffmpeg_shows(tmp_path, rotation):
    """A portrait phone clip is stored landscape with a display matrix; frames come out as ffmpeg displays them."""
    path = write_clip(tmp_path / "phone.mp4", fps=Fraction(30000, 1001), rotation=rotation, marker=True,
                      sample_rate=44100, channels=2)
    info = probe(path)
    v = normalize_video(path)
    shape = (W, H) if rotation % 180 else (H, W)
    assert info.rotation == rotation % 360 and (info.height, info.width) == shape and v.frames.shape[1:3] == shape
    ffmpeg("-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", str(tmp_path / "shown.rgb"))
    shown = np.fromfile(tmp_path / "shown.rgb", np.uint8).reshape(*shape, 3)
    assert np.abs(shown.astype(int) - v.frames[0]).mean() < 1.0


@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize("sr", SAMPLE_RATES)
def test_every_common_sample_rate_mono_and_stereo(tmp_path, sr, channels):
    v = normalize_video(write_clip(tmp_path / "a.mp4", fps=30, sample_rate=sr, channels=channels), need_audio=True)
    assert (v.source_sample_rate, v.source_channels, v.sample_rate) == (sr, channels, 16000)
    assert abs(first_burst(v.audio, 16000) - BURSTS[0]) < 0.003
    # stereo is mixed: channel c carries 1/(1+c) of the signal, so the mono mix is the mean of 1 and 1/2
    peak = np.abs(v.audio[int(BURSTS[0] * 16000) : int((BURSTS[0] + 0.03) * 16000)]).max()
    assert abs(peak - 0.6 * (0.75 if channels == 2 else 1.0)) < 0.08


@pytest.mark.parametrize("sr", [8000, 44100])
def test_wav_speech_is_mixed_and_resampled(tmp_path, sr):
    import soundfile as sf

    sf.write(tmp_path / "s.wav", burst_audio(1.0, sr, 2).T, sr)
    audio, rate = normalize_audio(tmp_path / "s.wav")
    assert rate == 16000 and abs(len(audio) - 16000) <= 1 and abs(first_burst(audio, 16000) - BURSTS[0]) < 0.003
    native, rate = normalize_audio(tmp_path / "s.wav", sample_rate=None)
    assert rate == sr and native.ndim == 1


def test_audio_that_starts_late_stays_in_sync(tmp_path):
    """A container whose audio stream starts 0.2 s after its video: the burst plays at 0.7 s, and so it stays."""
    write_clip(tmp_path / "base.mp4", sample_rate=48000)
    ffmpeg("-i", str(tmp_path / "base.mp4"), "-itsoffset", "0.2", "-i", str(tmp_path / "base.mp4"),
           "-map", "0:v", "-map", "1:a", "-c", "copy", str(tmp_path / "late.mp4"))
    v = normalize_video(tmp_path / "late.mp4", need_audio=True)
    assert abs(first_burst(v.audio, 16000) - (BURSTS[0] + 0.2)) < 0.005


def test_reference_without_audio(tmp_path):
    v = normalize_video(write_clip(tmp_path / "ref.mp4", fps=30, sample_rate=None))
    assert len(v.frames) == 40 and v.audio.size == 0 and v.sample_rate == 0
    with pytest.raises(MediaError, match="no audio stream"):
        normalize_video(tmp_path / "ref.mp4", need_audio=True)


def test_odd_frame_sizes(tmp_path):
    path = write_clip(tmp_path / "odd.mp4", fps=30, size=(63, 47), pix_fmt="yuv444p", sample_rate=22050)
    v = normalize_video(path, need_audio=True)
    assert v.frames.shape[1:3] == (47, 63) and v.source_size == (63, 47)
    _assert_retimed(v, 1 / 30)


@pytest.mark.parametrize("name, codecs", [
    ("clip.mov", ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac")),
    ("clip.mkv", ("-c:v", "mpeg4", "-c:a", "libvorbis")),
    ("clip.webm", ("-c:v", "libvpx-vp9", "-c:a", "libopus")),
    ("clip.avi", ("-c:v", "mjpeg", "-c:a", "pcm_s16le")),
])
def test_other_containers_made_by_ffmpeg(tmp_path, name, codecs):
    sr = 48000 if name.endswith("webm") else 44100  # Opus has no 44.1 kHz
    path = ffmpeg_clip(tmp_path / name, fps="24000/1001", seconds=1.6, sample_rate=sr, extra=codecs)
    v = normalize_video(path, need_audio=True)
    assert v.source_rate == Fraction(24000, 1001) and len(v.frames) == 40 and v.sample_rate == 16000
    assert abs(len(v.audio) / 16000 - 1.6) < 0.05


def test_max_frames_cuts_at_the_working_rate(tmp_path):
    v = normalize_video(write_clip(tmp_path / "c.mp4", fps=60, seconds=1.6, sample_rate=None), max_frames=10)
    assert len(v.frames) == 10
    _assert_retimed(v, 1 / 60)


def test_retime_picks_nearest_frames_and_is_the_identity_at_the_same_rate():
    assert list(rate_index(10, 25, 25)) == list(range(10))
    assert list(rate_index(6, 50, 25)) == [0, 2, 4]
    assert list(rate_index(8, 25, 50)) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    # 25 → 29.97 for paste-back: each output instant shows the working frame nearest in time
    idx = rate_index(50, 25, Fraction(30000, 1001), 60)
    t_out, t_src = np.arange(60) * 1001 / 30000, idx / 25
    assert np.abs(t_out - t_src).max() <= 0.02 + 1e-9 and np.all(np.diff(idx) >= 0)
    frames = np.arange(50)[:, None]
    assert np.array_equal(retime(frames, 25, Fraction(30000, 1001), 60)[:, 0], idx)


@pytest.mark.parametrize("fps", [Fraction(30000, 1001), "24000/1001", 59.94, 24])
def test_write_video_keeps_a_rational_rate(tmp_path, fps):
    rate = as_rate(fps)
    n = int(round(1.2 * rate))
    frames = np.stack([timed_frame(i / float(rate)) for i in range(n)])
    audio = burst_audio(n / float(rate), 48000)[0]
    path = write_video(tmp_path / "o.mp4", frames, fps, audio, 48000)
    info = probe(path)
    assert info.rate == rate and info.n_frames == n and info.sample_rate == 48000
    v = read_video(path, need_audio=True)
    assert np.allclose(v.times, np.arange(n) / float(rate), atol=1e-4)


def test_write_video_carries_audio_at_a_rate_aac_lacks(tmp_path):
    path = write_video(tmp_path / "o.mp4", np.zeros((10, 16, 16, 3), np.uint8), 25, burst_audio(0.4, 13000)[0], 13000)
    assert probe(path).sample_rate == 16000


def test_generation_output_is_saved_at_the_source_rate(tmp_path):
    """Paste-back: working-rate frames written at 29.97 fps follow the audio's length; the audio is unchanged."""
    from avatarv.inference.pipeline import AvatarVPipelineOutput

    audio = burst_audio(1.6, 48000)[0]
    frames = np.stack([timed_frame(i / 25) for i in range(40)])
    out = AvatarVPipelineOutput(frames=frames, motion=np.zeros((40, 16)), latents=None, fps=25, audio=audio,
                                sample_rate=48000)
    path = out.save(tmp_path / "o.mp4", fps=Fraction(30000, 1001))
    info = probe(path)
    assert info.rate == Fraction(30000, 1001) and info.sample_rate == 48000
    assert info.n_frames == round(1.6 * 30000 / 1001)
    v = read_video(path, need_audio=True)
    shown = np.array([time_of(f) for f in v.frames])
    assert np.abs(shown - v.times).max() <= 0.02 + CODING_S  # each instant shows the working frame nearest to it
    assert abs(first_burst(v.audio, 48000) - BURSTS[0]) < 0.003
