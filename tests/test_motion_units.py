"""The motion stream lives in per-channel unit-variance token units (models/dit.py normalize_motion): training,
the reference tokens and the pipeline's output all go through the same map."""

import copy

import pytest
import torch

from avatarv.inference.conditions import ConditionSpec
from avatarv.models.audio_encoder import AudioEncoder
from avatarv.models.dit import AvatarTransformer3DModel
from avatarv.train.generator import AvatarGenerator
from avatarv.train.objectives import FlowSpec, flow_loss
from avatarv.train.sft import motion_statistics

T = 5


def _generator(stats=None):
    torch.manual_seed(4)
    dit = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=16, temporal_downsample=1,
                                   **(stats or {}))
    return AvatarGenerator(dit, AudioEncoder(audio_dim=16, layers=1, heads=2, mel_mean=-8.0)).eval()


def _batch():
    g = torch.Generator().manual_seed(5)
    r = lambda *s: torch.randn(*s, generator=g)
    return {"latents": r(2, 4, T, 8, 8), "mel": r(2, 80, 4 * T) - 8, "motion": 0.03 * r(2, T, 16) + 0.5,
            "ref_latents": r(2, 4, 3, 8, 8), "ref_motion": 0.03 * r(2, 3, 16) + 0.5}


def test_statistics_and_round_trip():
    motion = torch.randn(7, T, 16, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.001, 2, 16) + 3
    stats = motion_statistics(motion)
    flat = motion.reshape(-1, 16)
    assert stats["motion_mean"] == pytest.approx(flat.mean(0).tolist(), abs=1e-5)
    assert stats["motion_std"][0] == 0.01  # the floor: a near-constant channel is not blown up
    assert stats["motion_std"][-1] == pytest.approx(float(flat[:, -1].std()), rel=1e-4)
    dit = _generator(stats).transformer
    z = dit.normalize_motion(motion)
    assert z.reshape(-1, 16)[:, 1:].std(0).tolist() == pytest.approx([1.0] * 15, rel=1e-3)
    torch.testing.assert_close(dit.denormalize_motion(z), motion)
    plain = _generator().transformer  # no statistics (older checkpoints): the identity
    assert torch.equal(plain.normalize_motion(motion), motion)


def test_flow_loss_runs_the_motion_flow_in_token_units():
    """A generator with statistics on raw motion == the same weights without statistics on pre-normalised motion:
    both the noised motion tokens and the clean reference tokens are normalised, nothing else changes."""
    b = _batch()
    stats = motion_statistics(b["motion"])
    with_stats = _generator(stats)
    without = copy.deepcopy(with_stats)
    without.transformer = without.transformer.with_config(motion_mean=None, motion_std=None)
    spec = FlowSpec(ConditionSpec(start_frame=False), cond_dropout=0.0, losses={"motion": 1.0})
    _, a = flow_loss(with_stats, b, torch.Generator().manual_seed(7), spec, td=1)
    normed = {**b, "motion": with_stats.transformer.normalize_motion(b["motion"]),
              "ref_motion": with_stats.transformer.normalize_motion(b["ref_motion"])}
    _, c = flow_loss(without, normed, torch.Generator().manual_seed(7), spec, td=1)
    assert a == pytest.approx(c, rel=1e-5)
    _, raw = flow_loss(without, b, torch.Generator().manual_seed(7), spec, td=1)
    assert abs(raw["motion"] - a["motion"]) > 1e-3  # the units matter


def test_flow_loss_moves_the_condition_prior_with_the_targets_head_shift():
    """With motion_shift the prior mean of every target frame is the clip's start frame translated by the target's
    own head shift since that frame (teacher forcing; models/motion_plan.py); without it no prior mean is given."""
    from unittest import mock

    from avatarv.models.motion_plan import DX, DY, head_shift, shifted_condition

    b = _batch()
    b["start_latent"] = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    b["start_motion"] = b["motion"][:, 0] - 0.1
    b["motion"][:, :, DX] += torch.linspace(0, 0.4, T)  # the head drifts right and up through the window
    b["motion"][:, :, DY] -= torch.linspace(0, 0.2, T)
    gen = _generator({"frame_condition": True, "condition_prior_var": 0.1})
    seen = []
    real = gen.transformer.forward

    def spy(*a, **k):
        seen.append(k.get("prior_mean"))
        return real(*a, **k)

    for shift_on in (True, False):
        spec = FlowSpec(ConditionSpec(motion_shift=shift_on), cond_dropout=0.0, losses={"motion": 1.0})
        with mock.patch.object(gen.transformer, "forward", side_effect=spy):
            flow_loss(gen, b, torch.Generator().manual_seed(7), spec, td=1)
    expected = shifted_condition(b["start_latent"], head_shift(b["motion"], b["start_motion"], 8))
    torch.testing.assert_close(seen[0], expected)
    assert head_shift(b["motion"], b["start_motion"], 8)[:, -1, 0].min() > 0.1  # a real shift was tested
    assert seen[1] is None
