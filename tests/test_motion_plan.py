"""models/motion_plan.py: head-shift units against the renderer, the latent translation, the motion plan's spectrum."""

import numpy as np
import pytest
import torch

from avatarv.models.motion_plan import DX, DY, PITCH, YAW, head_shift, motion_plan, shifted_condition


def test_head_shift_is_the_rendered_head_shift():
    """Known answer from the corpus renderer: a pose shifted by (dx, dy) moves every face landmark by head_shift of
    the corresponding motion vectors (units and signs), and the start frame translated by it nearly equals the frame;
    with yaw and pitch too, head_shift follows the face centre (the fitted coefficients) far better than dx/dy alone."""
    from avatarv.data.clips import render_frames, scene_setup
    from avatarv.data.identities import build_identities
    from avatarv.data.render import Pose

    ident = build_identities(1, 0, ["en"])[0]
    bg, look, _ = scene_setup(ident, 0, 0, 128)
    frames, lms = render_frames(ident, [Pose(), Pose(dx=8, dy=-4)], look, bg, 64)
    motion = torch.zeros(1, 2, 16)
    motion[0, 1, DX], motion[0, 1, DY] = 8 / 20, -4 / 20  # models/motion.py: dx/20, dy/20
    shift = head_shift(motion, motion[:, 0], 64)
    np.testing.assert_allclose((lms[1] - lms[0]).mean(0), shift[0, 1].numpy(), atol=1e-4)
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float()
    moved = shifted_condition(x[:1], shift)[0, :, 1]
    assert ((moved - x[1]) ** 2).mean() < 0.01 * ((x[0] - x[1]) ** 2).mean()
    _, lms = render_frames(ident, [Pose(), Pose(yaw=8, pitch=-6, dx=3, dy=2)], look, bg, 64)
    turned = torch.zeros(1, 2, 16)
    turned[0, 1, YAW], turned[0, 1, PITCH], turned[0, 1, DX], turned[0, 1, DY] = 8 / 30, -6 / 30, 3 / 20, 2 / 20
    moved_by = (lms[1] - lms[0]).mean(0)
    err = np.abs(head_shift(turned, turned[:, 0], 64)[0, 1].numpy() - moved_by)
    shift_only = np.abs(np.array([3, 2]) / 2 - moved_by)
    assert (err < 0.3).all() and (err < 0.5 * shift_only).all(), (err, shift_only)


def test_shifted_condition_known_answers():
    g = torch.Generator().manual_seed(0)
    frame = torch.randn(2, 3, 12, 10, generator=g)
    shift = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, -3.0]], [[1.0, 1.0], [0.0, 0.0], [-2.0, 2.0]]])
    out = shifted_condition(frame, shift)
    assert out.shape == (2, 3, 3, 12, 10)
    torch.testing.assert_close(out[0, :, 0], frame[0])  # no shift: the frame itself
    torch.testing.assert_close(out[0, :, 1, :, 2:], frame[0, :, :, :-2])  # content moves right by 2
    torch.testing.assert_close(out[0, :, 2, :-3], frame[0, :, 3:])  # content moves up by 3
    torch.testing.assert_close(out[1, :, 2, 2:, :-2], frame[1, :, :-2, 2:])  # left 2, down 2
    # sub-pixel: bilinear interpolation is exact on a linear ramp (away from the border)
    ramp = torch.arange(10.0).expand(12, 10)[None, None]
    half = shifted_condition(ramp, torch.tensor([[[0.25, 0.0]]]))
    torch.testing.assert_close(half[0, 0, 0, :, 1:], ramp[0, 0, :, 1:] - 0.25)


def test_motion_plan_keeps_the_spectrum_and_starts_at_the_first_pose():
    """Each channel keeps its power spectrum (so its spread and dominant frequency) with new phases; the plan starts
    at the history's first pose, is reproducible from the generator and new for another seed."""
    rng = np.random.default_rng(0)
    t = np.arange(100) / 25
    h = np.stack([0.3 * np.sin(2 * np.pi * f * t + p) for f, p in zip(rng.uniform(0.2, 3, 16), rng.uniform(0, 6, 16))], 1)
    h = (h + 0.02 * rng.standard_normal(h.shape) + rng.normal(size=16)).astype(np.float32)
    plan = motion_plan(h, 100, torch.Generator().manual_seed(1), cutoff_hz=None)
    np.testing.assert_allclose(plan[0], h[0], atol=1e-6)
    spec = lambda x: np.abs(np.fft.rfft(x - x.mean(0), axis=0))
    np.testing.assert_allclose(spec(plan)[1:], spec(h)[1:], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(plan.std(0), h.std(0), rtol=1e-3)
    assert np.abs(plan - h).max() > 0.1  # a new trajectory, not the history
    np.testing.assert_array_equal(plan, motion_plan(h, 100, torch.Generator().manual_seed(1), cutoff_hz=None))
    assert np.abs(plan - motion_plan(h, 100, torch.Generator().manual_seed(2), cutoff_hz=None)).max() > 0.1
    longer = motion_plan(h, 250, torch.Generator().manual_seed(1), cutoff_hz=None)
    np.testing.assert_allclose(longer[:100], plan, atol=1e-6)  # periodic beyond the history
    np.testing.assert_allclose(longer[100:200], plan, atol=1e-6)
    # the default low-pass (tracker noise above 3 Hz): the spectrum is kept below the cutoff and empty above it
    smooth = motion_plan(h, 100, torch.Generator().manual_seed(1))
    f = np.fft.rfftfreq(100, 1 / 25)
    np.testing.assert_allclose(spec(smooth)[(f > 0) & (f <= 3)], spec(h)[(f > 0) & (f <= 3)], rtol=1e-3, atol=1e-3)
    assert spec(smooth)[f > 3].max() < 1e-4 and spec(h)[f > 3].max() > 1.0
    np.testing.assert_array_equal(motion_plan(h[:1], 7), np.repeat(h[:1], 7, 0))  # a still image: the pose held
    with pytest.raises(ValueError, match="motion history"):
        motion_plan(h[:0], 10)
