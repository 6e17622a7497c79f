"""The super-resolution refiner (models/refiner.py, train/refiner.py): banded window attention equals dense attention
with the band mask; the reference reaches the output only through the attention keys/values; chunked refinement is
exact; output size and fps through the pipeline and `avatarv generate`; exact resume; one-line bad-input errors."""

import numpy as np
import pytest
import torch

from avatarv.errors import InputError
from avatarv.models.refiner import (
    RefinerModel,
    band_mask,
    check_low_res,
    dense_window_attention,
    refine_frames,
    window_attention,
)


def _model(seed=0, **kw):
    """A small refiner with non-zero weights everywhere (the zero-initialised head would hide the network)."""
    torch.manual_seed(seed)
    kw = {"factor": 2, "in_size": [16, 16], "patch": 4, "hidden": 32, "layers": 2, "heads": 2, "window": 1, **kw}
    m = RefinerModel(**kw).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim > 1 or p.abs().sum() == 0:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m


def _video(T=5, size=16, seed=0):
    return torch.rand(1, 3, T, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------------------ attention
def test_band_mask_known_answer():
    m = band_mask(4, 1, 1)
    expect = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, expect)
    assert band_mask(3, 2, 0).all() and band_mask(3, 2, 1).shape == (6, 6)


@pytest.mark.parametrize("T, window", [(1, 1), (2, 1), (5, 1), (6, 2), (7, 3), (5, 0), (4, 6)])
@pytest.mark.parametrize("prefix", ["none", "batch1", "per_sample"])
def test_window_attention_equals_dense_band_mask(T, window, prefix):
    g = torch.Generator().manual_seed(T * 10 + window)
    B, H, n, d = 2, 2, 3, 8
    q, k, v = (torch.randn(B, H, T * n, d, generator=g, dtype=torch.float64) for _ in range(3))
    pk = pv = None
    if prefix != "none":
        pb = 1 if prefix == "batch1" else B
        pk, pv = (torch.randn(pb, H, 5, d, generator=g, dtype=torch.float64) for _ in range(2))
    fast = window_attention(q, k, v, T, window, pk, pv)
    slow = dense_window_attention(q, k, v, T, window, pk, pv)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)


def test_window_attention_is_not_full_attention():
    """The band matters: with w=1 over 5 frames the result differs from attention over every frame."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 5 * 2, 4, generator=g) for _ in range(3))
    assert not torch.allclose(window_attention(q, k, v, 5, 1), window_attention(q, k, v, 5, 0))


def test_dropped_prefix_is_no_prefix():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 4 * 3, 8, generator=g, dtype=torch.float64) for _ in range(3))
    pk, pv = (torch.randn(2, 2, 6, 8, generator=g, dtype=torch.float64) for _ in range(2))
    keep = torch.tensor([True, False])
    out = window_attention(q, k, v, 4, 1, pk, pv, keep)
    torch.testing.assert_close(out[1], window_attention(q, k, v, 4, 1)[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[0], window_attention(q, k, v, 4, 1, pk, pv)[0], rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------ the model
def test_untrained_refiner_is_bicubic():
    import torch.nn.functional as F

    torch.manual_seed(0)
    m = RefinerModel(factor=2, in_size=[16, 16], patch=4, hidden=32, layers=1, heads=2)
    x = _video(3)
    up = F.interpolate(x[0].transpose(0, 1), scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(m(x)[0].transpose(0, 1), up)


def test_reference_acts_only_through_attention():
    """Ablating the reference (none given, or dropped per sample) gives exactly the model without a reference path
    that shares every other weight; the reference does change the output when present."""
    ref_model = _model()
    noref = RefinerModel(**{**ref_model.config, "reference": False}).eval()
    missing, unexpected = noref.load_state_dict(ref_model.state_dict(), strict=False)
    assert not missing and all(k.startswith("ref_embed.") for k in unexpected) and unexpected
    x = _video(4)
    reference = torch.rand(1, 3, 1, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        cache = ref_model.encode_reference(reference)
        without = ref_model(x)
        dropped = ref_model(x, cache, torch.tensor([False]))
        with_ref = ref_model(x, cache)
        torch.testing.assert_close(without, noref(x), rtol=0, atol=0)
        torch.testing.assert_close(dropped, without, rtol=0, atol=1e-6)
        assert (with_ref - without).abs().max() > 1e-3
    # no reference → no gradient reaches the reference's own weights
    ref_model.zero_grad()
    ref_model(x, ref_model.reference_pass(reference), torch.tensor([False])).square().mean().backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in ref_model.ref_embed.parameters())


def test_reference_cache_is_the_reference_alone():
    """The cached K/V depend on the reference only (not on the video it will serve) and hold one segment."""
    m = _model()
    reference = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    c = m.encode_reference(reference)
    assert c.segment_tokens == [2 * (32 // 8) ** 2] and c.segment_frames == [2] and len(c.keys) == 2
    torch.testing.assert_close(m.encode_reference(reference).keys[1], c.keys[1], rtol=0, atol=0)


def test_chunked_refinement_equals_whole_video():
    m = _model(window=1)
    x = _video(11)
    with torch.no_grad():
        whole = m(x)
        for chunk in (2, 3, 5):
            torch.testing.assert_close(m.refine_video(x, chunk=chunk), whole, rtol=0, atol=1e-5)


def test_output_size_and_save_load(tmp_path):
    from avatarv.models.refiner import load_refiner

    m = _model()
    frames = (np.random.default_rng(0).random((7, 16, 16, 3)) * 255).astype(np.uint8)
    ref = (np.random.default_rng(1).random((2, 48, 40, 3)) * 255).astype(np.uint8)
    out = refine_frames(m, frames, ref)
    assert out.shape == (7, 32, 32, 3) and out.dtype == np.uint8
    m.save_pretrained(tmp_path / "r")
    again = load_refiner(tmp_path / "r")
    np.testing.assert_array_equal(refine_frames(again, frames, ref), out)


@pytest.mark.parametrize("shape", [(4, 32, 32, 3), (4, 16, 24, 3)])
def test_bad_low_res_size_is_one_line_naming_it(shape):
    m = _model()
    with pytest.raises(InputError) as e:
        check_low_res(np.zeros(shape, np.uint8), m, "clip.mp4")
    msg = str(e.value)
    assert msg.startswith("clip.mp4: ") and "upsamples 16x16 by 2 to 32x32" in msg and "\n" not in msg


# ------------------------------------------------------------------------------------------------ training
def _hires_set(n_ids=3, T=5, size=32, low=16):
    from avatarv.data.hires import HiresSet

    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(n_ids * 2, T, size, size, 3, generator=g) * 255).to(torch.uint8)
    low_u8 = torch.nn.functional.interpolate(frames.permute(0, 1, 4, 2, 3).flatten(0, 1).float(), size=(low, low),
                                             mode="area").round().to(torch.uint8)
    low_u8 = low_u8.view(n_ids * 2, T, 3, low, low).permute(0, 1, 3, 4, 2)
    boxes = torch.tensor([0.25, 0.2, 0.75, 0.8]).expand(n_ids * 2, T, 4).clone()
    meta = [{"clip_id": f"id{i:03d}_s{s}_c0", "identity": f"id{i:03d}", "scene": s,
             "split": "holdout" if i == n_ids - 1 else "train"} for i in range(n_ids) for s in range(2)]
    return HiresSet(frames=frames, low=low_u8, face_box=boxes, meta=meta)


def _cfg(tiny_cfg, **kw):
    import dataclasses

    r = dataclasses.replace(tiny_cfg.refiner, factor=2, in_size=[16, 16], hidden=16, layers=1, heads=2, frames=3,
                            batch_size=2, steps=4, checkpoint_every=2, warmup_steps=1, **kw)
    return dataclasses.replace(tiny_cfg, refiner=r, device="cpu")


def test_batches_are_deterministic_and_cross_scene():
    from avatarv.train.refiner import RefinerBatches

    hs = _hires_set()
    assert hs.reference_of(0) == 1 and hs.reference_of(1) == 0  # the same person, the other scene
    import dataclasses

    from avatarv.config import RefinerConfig

    rc = dataclasses.replace(RefinerConfig(), in_size=[16, 16], factor=2, frames=3)
    src = RefinerBatches(hs, hs.indices("train"), rc, seed=3)
    a, b = src.batch(5, 0, 1), src.batch(5, 0, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["low"].shape == (2, 3, 3, 16, 16) and a["high"].shape == (2, 3, 3, 32, 32)
    assert a["reference"].shape == (2, 3, 1, 32, 32)


def test_training_resumes_exactly(tiny_cfg, tmp_path):
    from avatarv.train.refiner import train_variant
    from avatarv.train.stage import StagePaths

    torch.set_num_threads(1)
    cfg, hs = _cfg(tiny_cfg), _hires_set()
    straight = train_variant(cfg, StagePaths(runs=tmp_path / "a"), hs, steps=4, progress=False)
    # a run killed after its step-2 checkpoint: the same run with only that checkpoint on disk
    import shutil

    from avatarv.train.loop import list_checkpoints

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(list_checkpoints(tmp_path / "b" / "refiner")[-1])
    assert list_checkpoints(tmp_path / "b" / "refiner")[-1].name == "step_000002"
    resumed = train_variant(cfg, StagePaths(runs=tmp_path / "b"), hs, steps=4, progress=False)
    assert resumed.metrics["resumed_from"] == 2
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    from avatarv.models.refiner import load_refiner

    sa, sb = load_refiner(straight.final_dir).state_dict(), load_refiner(resumed.final_dir).state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_unknown_variant_is_refused(tiny_cfg):
    from avatarv.train.refiner import variant_config

    with pytest.raises(ValueError, match="unknown variant 'sharpest'"):
        variant_config(tiny_cfg, "sharpest")
    assert variant_config(tiny_cfg, "full_temporal")["window"] == 0
    assert variant_config(tiny_cfg, "no_reference")["reference"] is False


def test_degradation_blur_and_noise():
    from avatarv.train.refiner import degrade, gaussian_blur

    x = torch.zeros(1, 3, 2, 9, 9)
    x[..., 4, 4] = 1.0
    same = gaussian_blur(x, torch.tensor([0.0]))
    torch.testing.assert_close(same, x)
    blurred = gaussian_blur(x, torch.tensor([1.0]))
    torch.testing.assert_close(blurred.sum(), x.sum())  # mass kept
    assert blurred[..., 4, 4].max() < 0.3 and blurred[..., 4, 5].min() > 0
    g = torch.Generator().manual_seed(0)
    assert degrade(x, g, [0.0, 0.0], [0.0, 0.0]).equal(x)


# ------------------------------------------------------------------------------------------------ pipeline and CLI
def _speech(seconds, sr=16000):
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def saved_pair(tmp_path_factory):
    """A tiny saved pipeline (32-px frames) and a matching ×2 refiner, plus one of the wrong input size."""
    from _inference_fixtures import tiny_pipeline, tiny_pipeline_parts

    d = tmp_path_factory.mktemp("refiner_cli")
    tiny_pipeline(tiny_pipeline_parts()).save_pretrained(d / "pipe")
    _model(in_size=[32, 32]).save_pretrained(d / "refiner")
    _model(in_size=[16, 16]).save_pretrained(d / "wrong")
    return d


def test_pipeline_with_refiner_saves_loads_and_refines(saved_pair, tmp_path):
    from avatarv.inference.pipeline import load_pipeline
    from avatarv.models.refiner import load_refiner

    pipe = load_pipeline(saved_pair / "pipe")
    ref = (np.random.default_rng(0).random((9, 40, 48, 3)) * 255).astype(np.uint8)
    kw = dict(num_inference_steps=1, progress=False, measure_motion=False, crop="full")
    base = pipe(ref, _speech(0.5), 16000, generator=torch.Generator().manual_seed(0), **kw)
    pipe.register_modules(refiner=load_refiner(saved_pair / "refiner"))
    pipe.save_pretrained(tmp_path / "with_refiner")
    again = load_pipeline(tmp_path / "with_refiner")
    out = again(ref, _speech(0.5), 16000, generator=torch.Generator().manual_seed(0), **kw)
    assert out.frames.shape == (len(base.frames), 64, 64, 3) and out.fps == base.fps
    np.testing.assert_array_equal(out.frames, refine_frames(again.refiner, base.frames, ref))
    skip = again(ref, _speech(0.5), 16000, generator=torch.Generator().manual_seed(0), refine=False, **kw)
    np.testing.assert_array_equal(skip.frames, base.frames)


def test_cli_refines_by_default_and_no_refine_skips(saved_pair, tmp_path, monkeypatch, capsys):
    from PIL import Image
    from skimage.data import astronaut

    import avatarv.paths
    from avatarv.cli import main
    from avatarv.media import probe, read_video, write_wav

    runs = tmp_path / "runs"
    (runs / "refiner").mkdir(parents=True)
    import shutil

    shutil.copytree(saved_pair / "refiner", runs / "refiner" / "model")
    monkeypatch.setattr(avatarv.paths, "RUNS", runs)
    Image.fromarray(astronaut()[:300, 100:400]).resize((128, 128)).save(tmp_path / "face.png")
    write_wav(tmp_path / "speech.wav", _speech(0.6), 16000)
    common = ["generate", "--ref", str(tmp_path / "face.png"), "--audio", str(tmp_path / "speech.wav"),
              "--checkpoint", str(saved_pair / "pipe"), "--steps", "1", "--no-progress", "--fps", "30", "--crop", "full", "--i-have-consent"]
    assert main([*common, "--out", str(tmp_path / "a.mp4")]) == 0
    assert "64x64 (refined)" in capsys.readouterr().out
    assert read_video(tmp_path / "a.mp4").frames.shape[1:3] == (64, 64) and probe(tmp_path / "a.mp4").rate == 30
    assert main([*common, "--out", str(tmp_path / "b.mp4"), "--no-refine"]) == 0
    assert read_video(tmp_path / "b.mp4").frames.shape[1:3] == (32, 32)
    # the face-aligned path refines the generated face, then pastes it back at the reference's size
    face = [a for a in common if a not in ("--crop", "full")]
    assert main([*face, "--out", str(tmp_path / "d.mp4")]) == 0
    assert "128x128 (refined)" in capsys.readouterr().out
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "c.mp4"), "--refiner", str(saved_pair / "wrong")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(saved_pair / "wrong") in err and "upsamples 16x16" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c.mp4").exists()


def test_cli_help_states_the_output_size(capsys):
    from avatarv.cli import main

    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-refine" in text and "256x256 at tiny" in text and "1080x1920" in text


# ------------------------------------------------------------------------------------------------ data
def test_hires_render_is_the_corpus_person_at_a_higher_size(tiny_cfg):
    """The re-rendered clip, area-downsampled, is the same frame the renderer gives at the low size (same seeds:
    same person, scene, speech and motion), and its face boxes are normalised."""
    import dataclasses

    import torch.nn.functional as F

    from avatarv.data.hires import base_like, render_clips

    cfg = dataclasses.replace(tiny_cfg, corpus=dataclasses.replace(tiny_cfg.corpus, identities=2, scenes=1),
                              train=dataclasses.replace(tiny_cfg.train, holdout_identities=1))
    hi, boxes, meta = render_clips(cfg, 128, 3, progress=False)
    lo, _, _ = render_clips(cfg, 32, 3, progress=False)
    assert hi.shape == (2, 3, 128, 128, 3) and [m["split"] for m in meta] == ["train", "holdout"]
    assert boxes.min() >= 0 and boxes.max() <= 1 and (boxes[..., 2] > boxes[..., 0]).all()
    down = F.interpolate(torch.from_numpy(hi).flatten(0, 1).permute(0, 3, 1, 2).float(), size=(32, 32), mode="area")
    diff = (down - torch.from_numpy(lo).flatten(0, 1).permute(0, 3, 1, 2).float()).abs().mean()
    assert diff < 6.0, diff  # grey levels: the same picture up to resampling
    other = (down - torch.from_numpy(lo[::-1].copy()).flatten(0, 1).permute(0, 3, 1, 2).float()).abs().mean()
    assert other > 3 * diff  # and not just any face
    small = base_like(torch.from_numpy(hi), (32, 32))
    assert small.shape == (2, 3, 32, 32, 3) and small.dtype == torch.uint8
