"""`avatarv adapt` (train/adapt.py): a per-person LoRA fitted on the reference clip, saved in peft's layout, reloaded
exactly (by the project and by peft itself), cached by the clip's hash, resumable, with one-line input errors."""

import dataclasses

import numpy as np
import pytest
import torch
from _footage_fixtures import footage
from _inference_fixtures import tiny_pipeline, tiny_pipeline_parts

from avatarv.errors import InputError
from avatarv.inference.pipeline import load_pipeline
from avatarv.media import write_video
from avatarv.train import adapt as adapt_mod


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    c = footage(seconds=2.4, face_fraction=0.25)
    path = tmp_path_factory.mktemp("adapt") / "person.mp4"
    write_video(path, c.frames, 25, c.audio, c.sample_rate)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "final"
    tiny_pipeline(tiny_pipeline_parts(), audio=True, reference=True, motion=False).save_pretrained(path)
    return path


@pytest.fixture
def cfg(tiny_cfg):
    lora = dataclasses.replace(tiny_cfg.train.lora, batch_size=2, checkpoint_every=1, lr=1e-2, warmup_steps=0)
    return dataclasses.replace(tiny_cfg, device="cpu", train=dataclasses.replace(tiny_cfg.train, lora=lora))


def _velocity(tr):
    g = torch.Generator().manual_seed(3)
    x = torch.randn((1, tr.config.in_channels, 3, 8, 8), generator=g)
    with torch.no_grad():
        return tr(x, torch.tensor([0.5]), None).sample


def test_adapter_is_peft_format_and_reloads_exactly(cfg, clip, base, tmp_path):
    pipe = load_pipeline(base)
    before = _velocity(pipe.transformer)
    res = adapt_mod.adapt(cfg, pipe, base, clip, root=tmp_path, steps=3, progress=False)
    assert not res.cached and res.metrics["steps"] == 3 and res.metrics["windows"] >= 4
    assert sorted(p.name for p in res.adapter_dir.iterdir()) == ["adapt.json", "adapter_config.json",
                                                                  "adapter_model.safetensors"]
    tuned = _velocity(pipe.transformer)
    assert not torch.allclose(tuned, before)  # the adapter learned something
    reloaded = adapt_mod.load_adapter(load_pipeline(base), res.adapter_dir)
    torch.testing.assert_close(_velocity(reloaded.transformer), tuned, rtol=0, atol=0)

    from peft import PeftModel

    by_peft = PeftModel.from_pretrained(load_pipeline(base).transformer, str(res.adapter_dir))
    torch.testing.assert_close(_velocity(by_peft.base_model.model), tuned, rtol=0, atol=0)


def test_second_call_is_a_cache_hit_and_a_killed_run_resumes(cfg, clip, base, tmp_path, monkeypatch):
    first = adapt_mod.adapt(cfg, load_pipeline(base), base, clip, root=tmp_path, steps=2, progress=False)
    assert first.metrics["resumed_from"] is None

    def no_training(*a, **k):
        raise AssertionError("trained again")

    with monkeypatch.context() as m:
        m.setattr(adapt_mod, "train_loop", no_training)
        again = adapt_mod.adapt(cfg, load_pipeline(base), base, clip, root=tmp_path, steps=2, progress=False)
    assert again.cached and again.adapter_dir == first.adapter_dir
    # more steps: training continues from the step-2 checkpoint instead of starting over
    more = adapt_mod.adapt(cfg, load_pipeline(base), base, clip, root=tmp_path, steps=3, progress=False)
    assert not more.cached and more.metrics["resumed_from"] == 2


def test_bad_references_are_one_line(cfg, base, tmp_path):
    c = footage(seconds=0.8, face_fraction=0.25)
    short = write_video(tmp_path / "short.mp4", c.frames, 25, c.audio, c.sample_rate)
    with pytest.raises(InputError, match=r"short.mp4: reference too short to adapt on: 0.8 s \(need at least 2 s\)"):
        adapt_mod.adapt(cfg, load_pipeline(base), base, short, root=tmp_path, steps=1, progress=False)
    mute = write_video(tmp_path / "mute.mp4", footage(seconds=2.4).frames, 25)
    with pytest.raises(InputError, match=r"mute.mp4: adapt needs the reference's own speech"):
        adapt_mod.adapt(cfg, load_pipeline(base), base, mute, root=tmp_path, steps=1, progress=False)
    blank = write_video(tmp_path / "blank.mp4", np.full((60, 90, 160, 3), 99, np.uint8), 25, c.audio, 16000)
    with pytest.raises(InputError, match=r"blank.mp4: no face found"):
        adapt_mod.adapt(cfg, load_pipeline(base), base, blank, root=tmp_path, steps=1, progress=False)
    with pytest.raises(InputError, match="not a peft adapter folder"):
        adapt_mod.load_adapter(load_pipeline(base), tmp_path)
