"""Rectified flow, guidance and the Euler sampler: known answers."""

import pytest
import torch

from avatarv.diffusion.flow import (
    add_noise,
    bridge_mask,
    flow_loss,
    predicted_x0,
    sample_timesteps,
    shift_timesteps,
    velocity_target,
)
from avatarv.diffusion.guidance import Guidance, guided_velocity
from avatarv.diffusion.scheduler import make_scheduler


def test_noise_endpoints_and_x0_recovery():
    x0, noise = torch.randn(3, 4, 2, 5, 5), torch.randn(3, 4, 2, 5, 5)
    torch.testing.assert_close(add_noise(x0, noise, torch.zeros(3)), x0)
    torch.testing.assert_close(add_noise(x0, noise, torch.ones(3)), noise)
    t = torch.tensor([0.2, 0.5, 0.9])
    xt = add_noise(x0, noise, t)
    torch.testing.assert_close(predicted_x0(xt, velocity_target(x0, noise), t), x0, atol=1e-6, rtol=1e-6)


def test_timestep_sampling_and_shift():
    assert shift_timesteps(torch.tensor(0.5), 3.0).item() == pytest.approx(0.75)
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(4000, g, shift=3.0)
    assert t.min() > 0 and t.max() < 1 and t.mean() > 0.6  # shift moves mass toward noise
    assert torch.equal(sample_timesteps(8, torch.Generator().manual_seed(1)), sample_timesteps(8, torch.Generator().manual_seed(1)))


def test_flow_loss_weights_and_mask():
    pred, target = torch.zeros(1, 1, 3, 1, 2), torch.ones(1, 1, 3, 1, 2)
    target[:, :, 0] = 3.0  # the bridge frame has a huge error that must not count
    assert flow_loss(pred, target).item() == pytest.approx((9 * 2 + 1 * 4) / 6)
    assert flow_loss(pred, target, mask=bridge_mask(pred, 1)).item() == pytest.approx(1.0)
    w = torch.tensor([1.0, 3.0]).view(1, 1, 1, 1, 2)
    assert flow_loss(pred * 0 + 2, target * 0, weights=w).item() == pytest.approx(4.0)


def test_guidance_combination():
    calls = []
    table = {(False, False): 1.0, (True, False): 3.0, (True, True): 4.0}

    def predict(ref, aud):
        calls.append((ref, aud))
        return torch.tensor(table[(ref, aud)]), None

    v, m = guided_velocity(predict, Guidance(audio=2.0, reference=1.5))
    assert v.item() == pytest.approx(1 + 1.5 * 2 + 2 * 1) and m is None
    calls.clear()
    v, _ = guided_velocity(predict, Guidance(1.0, 1.0))
    assert v.item() == 4.0 and calls == [(True, True)]
    calls.clear()
    v, _ = guided_velocity(predict, Guidance(audio=3.0, reference=1.0))
    assert v.item() == pytest.approx(3 + 3 * 1) and len(calls) == 2


def test_euler_with_exact_velocity_lands_on_x0():
    x0, noise = torch.randn(10), torch.randn(10)
    sched = make_scheduler(3.0)
    sched.set_timesteps(sigmas=[1.0, 0.6, 0.3])
    x = noise.clone()
    for t in sched.timesteps:
        x = sched.step(velocity_target(x0, noise), t, x).prev_sample
    torch.testing.assert_close(x, x0, atol=1e-5, rtol=1e-5)
    assert sched.sigmas[-1] == 0 and sched.sigmas[0] == 1.0
