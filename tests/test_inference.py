"""AvatarVPipeline and `avatarv generate`: length follows audio, reference encoded once, cached == uncached across
chunks, bridge alignment, determinism, save/load, and one-line errors for bad inputs."""

from unittest import mock

import numpy as np
import pytest
import torch
from _inference_fixtures import tiny_pipeline, tiny_pipeline_parts

from avatarv.diffusion.guidance import Guidance
from avatarv.inference.pipeline import AvatarVPipeline, chunk_starts
from avatarv.models.latent_time import pool_to_latent_rate

SR = 16000


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(tiny_pipeline_parts())


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt") / "final"
    pipe.save_pretrained(d)
    return d


def _ref(n=9, seed=0):
    return (np.random.default_rng(seed).random((n, 40, 48, 3)) * 255).astype(np.uint8)


def _speech(seconds, seed=1):
    t = np.arange(int(SR * seconds)) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _run(pipe, seconds=1.3, seed=0, **kw):
    kw.setdefault("guidance", Guidance(audio=2.0, reference=1.5))
    return pipe(_ref(), _speech(seconds), SR, num_inference_steps=kw.pop("steps", 2),
                generator=torch.Generator().manual_seed(seed), progress=False, crop="full", **kw)


def test_chunk_plan():
    assert chunk_starts(3, 4, 1) == [0]
    assert chunk_starts(4, 4, 1) == [0]
    assert chunk_starts(5, 4, 1) == [0, 3]
    assert chunk_starts(9, 4, 1) == [0, 3, 6]  # covers 0..9, one padded latent frame trimmed
    assert chunk_starts(9, 4, 0) == [0, 4, 8]
    with pytest.raises(ValueError):
        chunk_starts(9, 4, 4)


@pytest.mark.parametrize("seconds", [0.3, 1.3, 2.05])
def test_video_length_follows_audio(pipe, seconds):
    out = _run(pipe, seconds, guidance=Guidance(1.0, 1.0), steps=1)
    n = int(round(seconds * 25))
    assert out.frames.shape == (n, 32, 32, 3) and out.frames.dtype == np.uint8
    assert out.motion.shape == (n, 16)
    assert out.latents.shape[2] == 1 + -(-(n - 1) // 4)


def test_reference_computed_once_per_generation(pipe):
    dit = pipe.transformer
    with mock.patch.object(dit, "_reference_pass", wraps=dit._reference_pass) as ref_pass, \
            mock.patch.object(dit, "forward", wraps=dit.forward) as fwd:
        _run(pipe, 1.3)  # 9 latent frames → 3 chunks × 2 steps × 3 CFG branches
    assert fwd.call_count == 3 * 2 * 3
    # one pass for the reference video, one for the anchor frames; never again for steps, branches or chunks
    assert ref_pass.call_count == 2
    first, second = ref_pass.call_args_list
    assert first.args[2] is None and second.args[2] is not None and second.args[0].shape[2] == 1


def test_cached_equals_uncached_across_chunks(pipe):
    cached = _run(pipe, 1.3)
    uncached = _run(pipe, 1.3, use_reference_cache=False)
    torch.testing.assert_close(cached.latents, uncached.latents, atol=1e-4, rtol=1e-4)


def test_bridge_frames_come_from_previous_chunk(pipe):
    dit = pipe.transformer
    seen = []
    real = dit.forward

    def spy(latents, *a, n_bridge=0, **kw):
        seen.append((n_bridge, latents[:, :, :1].clone()))
        return real(latents, *a, n_bridge=n_bridge, **kw)

    with mock.patch.object(dit, "forward", side_effect=spy):
        out = _run(pipe, 1.3, guidance=Guidance(1.0, 1.0))
    firsts = [x for i, (nb, x) in enumerate(seen) if nb == 1 and i % 2 == 0]  # first step of chunks 1, 2
    assert [nb for nb, _ in seen] == [0, 0, 1, 1, 1, 1]
    torch.testing.assert_close(firsts[0], out.latents[:, :, 3:4])
    torch.testing.assert_close(firsts[1], out.latents[:, :, 6:7])


def test_frame_condition_is_the_reference_first_frame_in_every_chunk():
    """Every step of every chunk is conditioned on the reference's first latent frame (clean and fixed: a bridge
    frame as condition would carry each chunk's errors into the next)."""
    from avatarv.inference.pipeline import square_resize
    from avatarv.models.dit import AvatarTransformer3DModel

    vae, _, audio_encoder = tiny_pipeline_parts()
    torch.manual_seed(0)
    dit = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=8, sample_size=32,
                                   frame_condition=True).eval()
    pipe = tiny_pipeline((vae, dit, audio_encoder))
    seen = []
    real = dit.forward

    def spy(latents, *a, cond_frame=None, **kw):
        seen.append(cond_frame.clone())
        return real(latents, *a, cond_frame=cond_frame, **kw)

    with mock.patch.object(dit, "forward", side_effect=spy):
        _run(pipe, 1.3, guidance=Guidance(1.0, 1.0))
    ref_first = vae.encode(square_resize(_ref()[:1], 32))[:, :, 0]  # causal VAE: the first frame is encoded alone
    assert len(seen) == 6  # 3 chunks x 2 steps
    for cond in seen:
        torch.testing.assert_close(cond, ref_first, atol=1e-5, rtol=1e-5)


def test_seed_determinism(pipe):
    a, b, c = _run(pipe, seed=3), _run(pipe, seed=3), _run(pipe, seed=4)
    assert np.array_equal(a.frames, b.frames)
    assert not torch.equal(a.latents, c.latents)


def test_save_load_roundtrip(pipe, saved):
    loaded = AvatarVPipeline.from_pretrained(str(saved))
    assert loaded.config.chunk_latent_frames == 4 and type(loaded.transformer) is type(pipe.transformer)
    torch.testing.assert_close(_run(loaded).latents, _run(pipe).latents, atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------ CLI
def _cli(*argv):
    from avatarv.cli import main

    return main(["generate", *map(str, argv), "--i-have-consent"])


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from PIL import Image
    from skimage.data import astronaut

    from avatarv.media import write_video, write_wav

    d = tmp_path_factory.mktemp("media")
    Image.fromarray(astronaut()[:300, 100:400]).resize((128, 128)).save(d / "face.png")
    face = np.asarray(Image.open(d / "face.png"))
    write_video(d / "face.mp4", np.stack([np.roll(face, k % 3, axis=1) for k in range(30)]), 25)
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(d / "gray.png")
    write_wav(d / "speech.wav", _speech(0.9), SR)
    write_wav(d / "silence.wav", np.zeros(SR, np.float32), SR)
    write_video(d / "noaudio.mp4", np.zeros((10, 32, 32, 3), np.uint8), 25)
    (d / "garbage.mp4").write_bytes(b"\x00not a video" * 50)
    (d / "garbage.png").write_bytes(b"\x89PNG broken")
    return d


def test_cli_generates_mp4_with_audio(media, saved, tmp_path):
    from avatarv.media import probe, read_video

    out = tmp_path / "out.mp4"
    assert _cli("--ref", media / "face.png", "--audio", media / "speech.wav", "--out", out, "--checkpoint", saved,
                "--steps", "1", "--seed", "7", "--no-progress") == 0
    info = probe(out)
    assert info.has_audio and len(read_video(out).frames) == round(0.9 * 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.mp4"]  # the sidecar; no temp files


def test_cli_writes_at_the_reference_rate(media, saved, tmp_path, capsys):
    """A camera clip (29.97 fps, 48 kHz stereo) as both reference and speech: the mp4 comes back at 30000/1001 fps,
    its length following the speech, its audio at the clip's own rate; `--fps` overrides the rate."""
    from fractions import Fraction

    from _media_fixtures import burst_audio, write_clip
    from PIL import Image

    from avatarv.media import probe

    face = np.asarray(Image.open(media / "face.png").convert("RGB"))
    frames = np.stack([np.roll(face, k % 3, axis=1) for k in range(30)])
    clip = write_clip(tmp_path / "camera.mp4", fps=Fraction(30000, 1001), frames=frames, size=(128, 128),
                      sample_rate=48000, channels=2, audio=np.stack([np.sin(np.arange(48048) / 7) * 0.3] * 2)
                      + burst_audio(1.001, 48000, 2))
    out = tmp_path / "out.mp4"
    assert _cli("--ref", clip, "--audio", clip, "--out", out, "--checkpoint", saved, "--steps", "1", "--no-progress") == 0
    info = probe(out)
    assert info.rate == Fraction(30000, 1001) and info.n_frames == 30 and info.sample_rate == 48000
    assert "30000/1001 fps" in capsys.readouterr().out
    assert _cli("--ref", clip, "--audio", clip, "--out", out, "--checkpoint", saved, "--steps", "1", "--fps", "25",
                "--no-progress") == 0
    assert (probe(out).rate, probe(out).n_frames) == (25, 25)
    assert _cli("--ref", clip, "--audio", clip, "--out", out, "--checkpoint", saved, "--fps", "fast") == 2
    assert "--fps: frame rate must be" in capsys.readouterr().err


@pytest.mark.parametrize("ref, audio, message", [
    ("gray.png", "speech.wav", "no face found in the reference"),
    ("face.png", "silence.wav", "audio is silent"),
    ("face.png", "noaudio.mp4", "no audio stream"),
    ("garbage.mp4", "speech.wav", "garbage.mp4"),
    ("garbage.png", "speech.wav", "unreadable image"),
    ("missing.png", "speech.wav", "file not found"),
])
def test_cli_bad_inputs_one_line(media, saved, tmp_path, capsys, ref, audio, message):
    out = tmp_path / "out.mp4"
    assert _cli("--ref", media / ref, "--audio", media / audio, "--out", out, "--checkpoint", saved) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_missing_checkpoint(media, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert _cli("--ref", media / "face.png", "--audio", media / "speech.wav", "--out", tmp_path / "o.mp4",
                "--checkpoint", missing) == 2
    err = capsys.readouterr().err.strip()
    assert f"{missing}: no trained checkpoint" in err and len(err.splitlines()) == 1


def test_cli_takes_a_saved_pipeline_only_and_a_motion_ref(media, pipe, tmp_path, capsys):
    """A saved pipeline (what every stage writes as runs/<stage>/final) generates, with another clip as the motion
    source; a folder of bare components is refused in one line naming it."""
    bare = tmp_path / "bare"
    pipe.transformer.save_pretrained(bare / "transformer")
    pipe.audio_encoder.save_pretrained(bare / "audio_encoder")
    assert _cli("--ref", media / "face.png", "--audio", media / "speech.wav", "--out", tmp_path / "x.mp4",
                "--checkpoint", bare) != 0
    assert str(bare) in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()
    ckpt = tmp_path / "sft_final"
    pipe.save_pretrained(ckpt)
    out = tmp_path / "o.mp4"
    assert _cli("--ref", media / "face.png", "--audio", media / "speech.wav", "--out", out,
                "--checkpoint", ckpt, "--steps", "1", "--motion-ref", media / "face.png", "--no-progress") == 0
    from avatarv.media import read_video

    assert len(read_video(out).frames) == round(0.9 * 25)
    assert _cli("--ref", media / "face.png", "--audio", media / "speech.wav", "--out", tmp_path / "p.mp4",
                "--checkpoint", ckpt, "--motion-ref", media / "gray.png") == 2


def test_chunk_audio_windows_match_global_timeline(pipe):
    """Each chunk's latent frame j (global s+j) sees exactly the audio rows of its global video frames ± margin."""
    from avatarv.models.latent_time import audio_windows

    dit, td, m = pipe.transformer, 4, pipe.transformer.config.audio_window
    calls = []
    real = dit.forward

    def spy(latents, *a, audio=None, audio_lead=0, **kw):
        calls.append((audio.clone(), audio_lead))
        return real(latents, *a, audio=audio, audio_lead=audio_lead, **kw)

    with mock.patch.object(dit, "forward", side_effect=spy):
        _run(pipe, 1.3, guidance=Guidance(1.0, 1.0), steps=1)
    n_padded = 10  # chunks start at 0, 3, 6 (4 latent frames each)
    feats = pipe.audio_features(_speech(1.3), SR, 1 + td * (n_padded - 1), "cpu", torch.float32)
    checked = 0
    for (a, lead), s in zip(calls, [0, 3, 6]):
        local, glob = audio_windows(4, td, m, lead), audio_windows(n_padded, td, m, 0)[s : s + 4]
        for r, g in zip(local.flatten().tolist(), glob.flatten().tolist()):
            if 0 <= r < a.shape[1]:
                torch.testing.assert_close(a[0, r], feats[0, g])
                checked += 1
            else:  # outside the chunk's audio: only before the video start or past the padded end
                assert g < 0 or g >= feats.shape[1]
    assert len(calls) == 3 and checked > 3 * 4 * td


def test_tiny_profile_pipeline_from_config(tiny_cfg):
    """The params.yaml tiny profile builds a working pipeline (shapes of the real config, 1 step, no CFG)."""
    from avatarv.inference.pipeline import pipeline_from_config
    from avatarv.models.audio_encoder import AudioEncoder
    from avatarv.models.dit import transformer_from_config
    from avatarv.models.vae import AvatarVideoVAE

    v = tiny_cfg.vae
    vae = AvatarVideoVAE(latent_channels=v.latent_channels, base_channels=8, spatial_downsample=v.spatial_downsample)
    dit = transformer_from_config(tiny_cfg.dit, v.latent_channels, sample_size=32)
    p = pipeline_from_config(tiny_cfg, vae.eval(), dit.eval(), AudioEncoder(audio_dim=tiny_cfg.dit.audio_dim).eval())
    out = p(_ref(), _speech(1.0), SR, num_inference_steps=1, guidance=Guidance(1.0, 1.0), crop="full",
            generator=torch.Generator().manual_seed(0), progress=False)
    assert out.frames.shape == (25, 32, 32, 3) and p.config.chunk_latent_frames == tiny_cfg.sampling.chunk_latent_frames


def _pipeline_with_motion_units(**conditions):
    """The tiny pipeline whose transformer has motion statistics (mean 0.5, std 0.1), trained with `conditions`."""
    vae, dit, audio_encoder = tiny_pipeline_parts()
    dit = dit.with_config(motion_mean=[0.5] * 16, motion_std=[0.1] * 16)
    return vae, dit, audio_encoder, tiny_pipeline((vae, dit, audio_encoder), **conditions)


def _run_seeing_reference(pipe, dit, ref_motion):
    """Run without CFG; also return what encode_reference got: {"ref": motion tokens, "context": history or None}."""
    seen = {}
    real = dit.encode_reference

    def spy(latents, motion=None, context=None):
        seen["ref"], seen["context"] = motion.clone(), None if context is None else context.clone()
        return real(latents, motion, context)

    with mock.patch.object(dit, "encode_reference", side_effect=spy):
        out = _run(pipe, 0.6, reference_motion=ref_motion, guidance=Guidance(1.0, 1.0))
    return out, seen


def test_motion_stream_enters_and_leaves_in_token_units():
    """With motion statistics on the transformer, the reference motion enters the cache normalised and the returned
    motion is denormalised: the output equals the stream the transformer denoised, mapped back."""
    vae, dit, audio_encoder, pipe = _pipeline_with_motion_units()
    ref_motion = np.full((9, 16), 0.7, np.float32)
    out, seen = _run_seeing_reference(pipe, dit, ref_motion)
    assert torch.allclose(seen["ref"], torch.full_like(seen["ref"], 2.0), atol=1e-5)  # (0.7 - 0.5) / 0.1
    tokens = (out.motion - 0.5) / 0.1  # what the transformer produced, in token units
    plain = tiny_pipeline((vae, tiny_pipeline_parts()[1], audio_encoder))
    ref_tokens = np.full((9, 16), 2.0, np.float32)
    base = _run(plain, 0.6, reference_motion=ref_tokens, guidance=Guidance(1.0, 1.0))
    np.testing.assert_allclose(tokens, base.motion, atol=1e-4)


def test_motion_context_is_the_references_motion_history():
    """A transformer trained with a motion context gets the reference's whole measured motion (first
    motion_context_frames frames, latent rate, token units) as a motion-only segment; the cached pipeline equals
    the uncached joint model with that segment, and the history changes the output."""
    vae, dit, _, pipe = _pipeline_with_motion_units(motion_context_frames=21)
    ref_motion = np.random.default_rng(0).normal(0.5, 0.1, (30, 16)).astype(np.float32)
    out, seen = _run_seeing_reference(pipe, dit, ref_motion)
    td = vae.config.temporal_downsample
    expected = pool_to_latent_rate((torch.as_tensor(ref_motion[:21])[None] - 0.5) / 0.1, td)
    torch.testing.assert_close(seen["context"], expected, atol=1e-5, rtol=1e-5)
    uncached = _run(pipe, 0.6, reference_motion=ref_motion, guidance=Guidance(1.0, 1.0), use_reference_cache=False)
    np.testing.assert_allclose(out.motion, uncached.motion, atol=1e-4)
    calm = _run(pipe, 0.6, reference_motion=np.concatenate([ref_motion[:9], np.full((21, 16), 0.5, np.float32)]),
                guidance=Guidance(1.0, 1.0))
    assert np.abs(calm.motion - out.motion).max() > 1e-4


def test_cli_measures_the_motion_history_over_the_reference_clip(media, tmp_path):
    """The reference motion is measured over `motion_context_frames` frames of the reference clip (the history the
    transformer was trained with), not only over the 5–9 frames of the video reference."""
    vae, dit, audio_encoder, pipe = _pipeline_with_motion_units(motion_context_frames=21)
    n_video, n_motion = pipe.reference_frames_used()
    assert (n_video, n_motion) == (1 + vae.config.temporal_downsample, 21)
    plain = tiny_pipeline((vae, tiny_pipeline_parts()[1], audio_encoder))
    assert plain.reference_frames_used() == (n_video, n_video)  # no history without one in the transformer
    no_stream = tiny_pipeline((vae, dit, audio_encoder), motion=False, motion_context_frames=21)
    assert no_stream.reference_frames_used() == (n_video, n_video)
    ckpt = tmp_path / "pipe"
    pipe.save_pretrained(ckpt)
    seen = []

    def measured(frames):
        seen.append(len(frames))
        return np.full((len(frames), 16), 0.5, np.float32)

    from avatarv.inference.motion_planner import MotionPlanner

    with mock.patch.object(MotionPlanner, "measure", staticmethod(measured)):
        assert _cli("--ref", media / "face.mp4", "--audio", media / "speech.wav", "--out", tmp_path / "o.mp4",
                    "--checkpoint", ckpt, "--steps", "1", "--no-progress") == 0
    assert seen == [21]


def test_motion_plan_moves_the_condition_prior_chunk_by_chunk():
    """A transformer trained with motion_shift gets, in every chunk, the condition prior's mean = the reference's
    first frame translated by a motion plan of the face's position, drawn from the reference's measured face track
    (the eye midpoint, in latent pixels: one plan for the whole video, chunk k reads its own frames); without
    motion_shift no prior mean is given."""
    from avatarv.inference.pipeline import square_resize
    from avatarv.models.dit import AvatarTransformer3DModel
    from avatarv.models.motion import MP_SHIFT_GAIN, SHIFT_SCALE
    from avatarv.models.motion_plan import DX, DY, shifted_condition

    vae, _, audio_encoder = tiny_pipeline_parts()
    ref_motion = np.random.default_rng(0).normal(0.5, 0.1, (30, 16)).astype(np.float32)
    plan = np.stack([np.linspace(0, 1.5, 64), -np.linspace(0, 0.5, 64)], 1).astype(np.float32)  # latent px
    def run(shift_on: bool):
        """(prior means the transformer got, calls of motion_plan) for one generation."""
        torch.manual_seed(0)
        dit = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=8, sample_size=32,
                                       frame_condition=True, condition_prior_var=0.1).eval()
        seen, asked = [], []
        real = dit.forward

        def spy(latents, *a, prior_mean=None, **kw):
            seen.append(prior_mean)
            return real(latents, *a, prior_mean=prior_mean, **kw)

        def planner(history, n_frames, generator, fps, cutoff_hz):
            asked.append((history.copy(), n_frames, fps))
            return plan[:n_frames]

        pipe = tiny_pipeline((vae, dit, audio_encoder), motion_context_frames=21, motion_shift=shift_on)
        with mock.patch.object(dit, "forward", side_effect=spy), \
                mock.patch("avatarv.inference.motion_planner.motion_plan", side_effect=planner):
            _run(pipe, 1.3, reference_motion=ref_motion, guidance=Guidance(1.0, 1.0))
        return seen, asked

    for shift_on in (True, False):
        seen, asked = run(shift_on)
        if not shift_on:
            assert asked == [] and all(p is None for p in seen)
            continue
        td = vae.config.temporal_downsample
        assert len(asked) == 1 and asked[0][1] >= 33 and (asked[0][1] - 1) % td == 0 and asked[0][2] == 25  # 33 frames, padded
        # the eye midpoint in reference pixels (dx, dy · SHIFT_SCALE · MP_SHIFT_GAIN), × 8 latent px / 40 px crop
        eyes = ref_motion[:21, [DX, DY]] * SHIFT_SCALE * np.asarray(MP_SHIFT_GAIN) * 8 / 40
        np.testing.assert_allclose(asked[0][0], eyes, rtol=1e-5)
        cond = vae.encode(square_resize(_ref()[:1], 32))[:, :, 0]
        latent_plan = pool_to_latent_rate(torch.as_tensor(plan[: asked[0][1]])[None], td)
        shift = latent_plan - torch.as_tensor(plan[:1])[:, None]
        assert len(seen) == 6 and shift[0, -1].abs().max() > 0.1
        for k, start in enumerate((0, 3, 6)):  # chunk starts (4 latent frames, 1 bridge)
            for step in range(2):
                torch.testing.assert_close(seen[2 * k + step], shifted_condition(cond, shift[:, start : start + 4]),
                                           atol=1e-5, rtol=1e-5)
