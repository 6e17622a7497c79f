"""AvatarVPipeline fed the way a stage trained its transformer (its ConditionSpec: motion, reference,
first_frame_bridge, motion_calibration): known answers for each flag, and the complete pipeline every stage saves
(save → from_pretrained keeps the conditions and generates the same; the five-line user snippet)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from _inference_fixtures import tiny_pipeline, tiny_pipeline_parts

from avatarv.diffusion.guidance import Guidance
from avatarv.inference.conditions import ConditionSpec
from avatarv.inference.pipeline import AvatarVPipeline, load_pipeline, pipeline_from_config, square_resize

SR = 16000
A2V = ConditionSpec(audio=True, reference=False, motion=False, first_frame_bridge=True)


@pytest.fixture(scope="module")
def parts():
    return tiny_pipeline_parts()


def _pipe(parts, **flags):
    return tiny_pipeline(parts, **flags)


def _ref(n=9, seed=0):
    return (np.random.default_rng(seed).random((n, 40, 48, 3)) * 255).astype(np.uint8)


def _speech(seconds=1.3, seed=1):
    t = np.arange(int(SR * seconds)) / SR
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + noise).astype(np.float32)


def _run(pipe, ref=None, **kw):
    kw.setdefault("guidance", Guidance(audio=2.0, reference=1.5))
    return pipe(_ref() if ref is None else ref, _speech(), SR, num_inference_steps=2,
                generator=torch.Generator().manual_seed(0), progress=False, crop="full", **kw)


def _motion(seed=2, n=9):
    return np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ first_frame_bridge
def test_first_frame_bridge_opens_the_video_with_the_references_first_latent(parts):
    vae, dit, _ = parts
    with torch.no_grad():
        ref_latents = vae.encode(square_resize(_ref()[:5], dit.config.sample_size))  # 2 latent frames = 5 video frames
    seen = []
    real = dit.forward

    def spy(latents, *a, n_bridge=0, **kw):
        seen.append(n_bridge)
        return real(latents, *a, n_bridge=n_bridge, **kw)

    with mock.patch.object(dit, "forward", side_effect=spy):
        out = _run(_pipe(parts, first_frame_bridge=True))
    assert torch.equal(out.latents[:, :, :1], ref_latents[:, :, :1])
    assert set(seen) == {1}  # chunk 0 has its bridge too, chunks 1, 2 the previous chunk's frame
    plain = _run(_pipe(parts))
    assert not torch.allclose(plain.latents[:, :, :1], ref_latents[:, :, :1], atol=1e-2)
    # the bridge sits only in the first frame: the rest is generated (differs from the reference's frame 1)
    assert not torch.allclose(out.latents[:, :, 1:2], ref_latents[:, :, 1:2], atol=1e-2)


# ------------------------------------------------------------------------------------------------ motion_stream
def test_without_motion_stream_the_transformer_never_sees_motion(parts):
    _, dit, _ = parts
    pipe = _pipe(parts, motion=False)
    with mock.patch.object(dit, "forward", wraps=dit.forward) as fwd, \
            mock.patch.object(dit, "_reference_pass", wraps=dit._reference_pass) as ref_pass:
        a = _run(pipe, reference_motion=_motion())
    assert fwd.call_count == 3 * 2 * 3  # 3 chunks × 2 steps × 3 CFG branches
    for call in fwd.call_args_list:
        motion = call.args[2] if len(call.args) > 2 else call.kwargs.get("motion")
        assert motion is None
    assert ref_pass.call_count == 2 and all(c.args[1] is None for c in ref_pass.call_args_list)
    b = _run(pipe, reference_motion=None)  # no stream: nothing is measured either
    c = _run(pipe, reference_motion=_motion(seed=5))
    assert torch.equal(a.latents, b.latents) and torch.equal(a.latents, c.latents)
    # with the stream on, the reference motion does change the result (the check above is not vacuous)
    on = _pipe(parts, motion=True)
    assert not torch.equal(_run(on, reference_motion=_motion()).latents, _run(on, reference_motion=_motion(seed=5)).latents)


# ------------------------------------------------------------------------------------------------ reference_attention
def _other_tail(ref, seed=7):
    other = ref.copy()
    other[1:] = _ref(seed=seed)[1:]
    return other


def test_without_reference_attention_only_the_first_frame_of_the_reference_matters(parts):
    _, dit, _ = parts
    pipe = _pipe(parts, reference=False, first_frame_bridge=True)
    ref = _ref()
    with mock.patch.object(dit, "encode_reference", wraps=dit.encode_reference) as enc, \
            mock.patch.object(dit, "extend_reference", wraps=dit.extend_reference) as ext, \
            mock.patch.object(dit, "forward_uncached", wraps=dit.forward_uncached) as unc, \
            mock.patch.object(dit, "forward", wraps=dit.forward) as fwd:
        a = _run(pipe, ref)
    assert enc.call_count == 0 and ext.call_count == 0
    calls = unc.call_args_list + fwd.call_args_list
    assert calls and all(not c.kwargs.get("reference_segments") and c.kwargs.get("reference") is None for c in calls)
    b = _run(pipe, _other_tail(ref))
    torch.testing.assert_close(a.latents, b.latents, atol=1e-5, rtol=1e-5)
    # frame 0 does matter (it is the bridge), and with reference attention on the tail matters too
    assert not torch.allclose(a.latents, _run(pipe, _other_tail(ref)[::-1].copy()).latents, atol=1e-3)
    on = _pipe(parts, reference=True, first_frame_bridge=True)
    assert not torch.allclose(_run(on, ref).latents, _run(on, _other_tail(ref)).latents, atol=1e-3)


def test_without_reference_attention_and_bridge_the_reference_is_unused(parts):
    pipe = _pipe(parts, reference=False)
    a, b = _run(pipe, _ref()), _run(pipe, _ref(seed=9))
    assert torch.equal(a.latents, b.latents)


# ------------------------------------------------------------------------------------------------ motion_calibration
def test_motion_calibration_maps_the_measured_reference_motion_before_the_transformer(parts):
    """The pipeline feeds scale·measured + shift: the same as an uncalibrated pipeline given the mapped motion."""
    g = np.random.default_rng(3)
    cal = {"scale": g.uniform(0.2, 2.0, 16).tolist(), "shift": g.normal(0, 0.5, 16).tolist()}
    m = _motion()
    calibrated = _run(_pipe(parts, motion_calibration=cal), reference_motion=m)
    mapped = m * np.asarray(cal["scale"], np.float32) + np.asarray(cal["shift"], np.float32)
    by_hand = _run(_pipe(parts), reference_motion=mapped)
    raw = _run(_pipe(parts), reference_motion=m)
    assert torch.equal(calibrated.latents, by_hand.latents)
    assert not torch.equal(calibrated.latents, raw.latents)


# ------------------------------------------------------------------------------------------------ saved pipelines
def test_unknown_conditions_are_refused():
    with pytest.raises(ValueError, match="motion_stream"):
        ConditionSpec.from_dict({"motion_stream": True})
    assert ConditionSpec.from_dict(A2V.to_dict()) == A2V and ConditionSpec.from_dict(None) == ConditionSpec()


@pytest.mark.parametrize("conditions", [A2V, ConditionSpec(motion=False), ConditionSpec(motion_context_frames=21,
                                                                                         motion_shift=True)])
def test_stage_save_is_a_complete_pipeline_that_generates_the_same(parts, tiny_cfg, tmp_path, conditions):
    """What a training stage saves (AvatarGenerator.save) loads with from_pretrained alone, keeps the conditions
    and the sampling knobs, and generates exactly what the in-memory pipeline does."""
    from avatarv.train.generator import AvatarGenerator

    vae, dit, audio_encoder = parts
    d = AvatarGenerator(dit, audio_encoder).save(tmp_path / "final", vae, tiny_cfg, conditions)
    assert {p.name for p in d.iterdir()} >= {"model_index.json", "transformer", "vae", "audio_encoder", "scheduler"}
    assert not (tmp_path / "final.partial").exists()
    pipe = load_pipeline(d)
    assert pipe.conditions == conditions
    assert pipe.config.steps == tiny_cfg.sampling.steps and pipe.config.fps == tiny_cfg.corpus.fps
    mem = pipeline_from_config(tiny_cfg, vae, dit, audio_encoder, conditions)
    run = {"guidance": Guidance(1.0, 1.0), "reference_motion": _motion(n=30)}
    torch.testing.assert_close(_run(pipe, **run).latents, _run(mem, **run).latents, atol=1e-5, rtol=1e-5)


def test_five_line_snippet_from_files(parts, tiny_cfg, tmp_path):
    """The README's snippet: from_pretrained, file paths in, an mp4 with the speech out, export_to_video-ready."""
    from diffusers.utils import export_to_video

    from avatarv.media import read_video, write_video, write_wav

    vae, dit, audio_encoder = parts
    pipeline_from_config(tiny_cfg, vae, dit, audio_encoder, A2V).save_pretrained(tmp_path / "final")
    write_video(tmp_path / "ref.mp4", _ref(n=12), 25)
    write_wav(tmp_path / "speech.wav", _speech(0.8), SR)

    pipe = AvatarVPipeline.from_pretrained(tmp_path / "final")
    out = pipe(reference=tmp_path / "ref.mp4", audio=tmp_path / "speech.wav", num_inference_steps=1, progress=False,
               crop="full")
    out.save(tmp_path / "talking.mp4")
    export_to_video(out.video, str(tmp_path / "silent.mp4"), fps=out.fps)

    talking = read_video(tmp_path / "talking.mp4", need_audio=True)
    assert len(talking.frames) == 20 and abs(len(talking.audio) / talking.sample_rate - 0.8) < 0.05
    assert len(read_video(tmp_path / "silent.mp4").frames) == 20
    # PIL frames and arrays are the same input
    from PIL import Image

    pil = pipe([Image.fromarray(f) for f in _ref(n=12)], _speech(0.8), SR, num_inference_steps=1, progress=False,
               generator=torch.Generator().manual_seed(0), crop="full")
    arr = pipe(_ref(n=12), _speech(0.8), SR, num_inference_steps=1, progress=False,
               generator=torch.Generator().manual_seed(0), crop="full")
    assert torch.equal(pil.latents, arr.latents)


def test_from_pretrained_in_a_fresh_process(parts, tiny_cfg, tmp_path):
    """`from avatarv import AvatarVPipeline` then from_pretrained works with nothing else imported first (diffusers
    resolves saved components by module name)."""
    import subprocess
    import sys

    vae, dit, audio_encoder = parts
    pipeline_from_config(tiny_cfg, vae, dit, audio_encoder).save_pretrained(tmp_path / "final")
    code = ("from avatarv import AvatarVPipeline; import sys; "
            "p = AvatarVPipeline.from_pretrained(sys.argv[1]); print(type(p.transformer).__name__, p.conditions.motion)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "final")], capture_output=True, text=True,
                         check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.split()[-2:] == ["AvatarTransformer3DModel", "True"]


def test_a_folder_without_a_saved_pipeline_or_a_corrupt_one_is_a_one_line_error(tmp_path):
    from avatarv.errors import AvatarVError

    with pytest.raises(AvatarVError, match="no saved pipeline") as e:
        load_pipeline(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "model_index.json").write_text('{"_class_name": "AvatarVPipeline", ')  # truncated
    with pytest.raises(AvatarVError, match=r"model_index\.json") as e:
        load_pipeline(tmp_path)
    assert "\n" not in str(e.value)
