"""Stage 4, distillation (train/distill.py): known answers for CFG distillation and the DMD gradient, the student
as a normal saved pipeline (one pass per step, its own step count), resume after a kill, and the teacher checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from avatarv.diffusion.flow import add_noise
from avatarv.diffusion.guidance import Guidance
from avatarv.inference.conditions import ConditionSpec
from avatarv.models.audio_encoder import AudioEncoder
from avatarv.models.dit import AvatarTransformer3DModel
from avatarv.train import distill
from avatarv.train.generator import AvatarGenerator

T = 3  # latent frames = video frames (td 1)
CONDITIONS = ConditionSpec(motion_context_frames=6, motion_shift=True)


def _teacher(seed: int = 0) -> AvatarGenerator:
    torch.manual_seed(seed)
    dit = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=16, temporal_downsample=1,
                                   sample_size=32, frame_condition=True, condition_prior_var=0.1,
                                   motion_mean=[0.5] * 16, motion_std=[0.05] * 16)
    with torch.no_grad():  # a teacher whose branches differ: guidance then changes its velocity
        for p in dit.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return AvatarGenerator(dit, AudioEncoder(audio_dim=16, layers=1, heads=2, mel_mean=-8.0)).eval().requires_grad_(False)


def _batch(seed: int = 5, B: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    start = r(B, 4, 8, 8)
    motion = 0.03 * r(B, T, 16) + 0.5
    return {"latents": start[:, :, None] + 0.3 * r(B, 4, T, 8, 8), "mel": r(B, 80, 4 * T) - 8, "motion": motion,
            "ref_latents": start[:, :, None] + 0.3 * r(B, 4, 3, 8, 8), "ref_motion": 0.03 * r(B, 3, 16) + 0.5,
            "ref_motion_context": 0.03 * r(B, 6, 16) + 0.5, "start_latent": start, "start_motion": motion[:, 0]}


class _Source:
    """A deterministic batch source (the PairBatches protocol) over synthetic pair batches."""

    bs = 2
    ws = None

    def batch(self, index: int, rank: int, world: int) -> dict:
        return _batch(seed=100 + index % 3)


def _student(teacher: AvatarGenerator) -> AvatarGenerator:
    torch.manual_seed(1)  # the guidance embedding's first layer is initialised from the global RNG
    return AvatarGenerator(teacher.transformer.with_config(guidance_embed=True),
                           copy.deepcopy(teacher.audio_encoder)).requires_grad_(True)


# ------------------------------------------------------------------------------------------------ phase 1
def _probe_error(student, teacher, batches, weights) -> float:
    """Relative error of the student's one pass against the teacher's guided velocity on fixed probes."""
    errs, norms = 0.0, 0.0
    for b, (wa, wr) in zip(batches, weights):
        x0, m0, kw = distill.joint_inputs(student, b, CONDITIONS, 1)
        g = torch.Generator().manual_seed(1)
        t = torch.tensor([0.3, 0.7])
        x_t = add_noise(x0, torch.randn(x0.shape, generator=g), t)
        m_t = add_noise(m0, torch.randn(m0.shape, generator=g), t)
        w = Guidance(audio=torch.tensor([wa, wa]), reference=torch.tensor([wr, wr]))
        v_t, _ = distill.teacher_velocity(teacher, x_t, m_t, t, kw, w)
        with torch.no_grad():
            v, _ = distill.velocity(student, x_t, m_t, t, kw, guidance=w.as_tensor(2))
        errs += float(((v - v_t) ** 2).mean())
        norms += float(((v_t - v_t.mean()) ** 2).mean())
    return errs / norms


def test_cfg_student_starts_as_the_teacher_and_learns_its_guided_velocity():
    torch.set_num_threads(1)
    teacher = _teacher()
    student = _student(teacher)
    b = _batch()
    x0, m0, kw = distill.joint_inputs(student, b, CONDITIONS, 1)
    t = torch.tensor([0.5, 0.5])
    # known answer at initialisation: the zero-initialised guidance embedding leaves the teacher's full branch
    full, _ = distill.velocity(teacher, x0, m0, t, kw)
    for w in ([1.0, 1.0], [3.0, 2.0]):
        v, _ = distill.velocity(student, x0, m0, t, kw, guidance=torch.tensor([w, w]))
        torch.testing.assert_close(v, full)
    batches = [_batch(seed=100 + i) for i in range(3)]
    weights = [(1.0, 1.0), (2.5, 1.5), (3.0, 2.0)]
    before = _probe_error(student, teacher, batches, weights)
    opt = torch.optim.AdamW(student.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for step in range(150):
        loss, terms = distill.cfg_distill_loss(student, teacher, batches[step % 3], gen, CONDITIONS, 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _probe_error(student, teacher, batches, weights)
    assert set(terms) == {"cfg_video", "cfg_motion"}
    assert after < 0.25 * before, (before, after)


def test_per_sample_guidance_equals_one_weight_at_a_time():
    """The teacher's guided velocity at per-sample weights (B,) = each sample guided with its own float weights."""
    teacher = _teacher()
    b = _batch()
    x0, m0, kw = distill.joint_inputs(teacher, b, CONDITIONS, 1)
    t = torch.tensor([0.4, 0.8])
    both, _ = distill.teacher_velocity(teacher, x0, m0, t, kw, Guidance(torch.tensor([1.5, 3.0]), torch.tensor([2.0, 1.0])))
    one, _ = distill.teacher_velocity(teacher, x0, m0, t, kw, Guidance(1.5, 2.0))
    two, _ = distill.teacher_velocity(teacher, x0, m0, t, kw, Guidance(3.0, 1.0))
    torch.testing.assert_close(both[0], one[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1], two[1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(one, two, atol=1e-3)


# ------------------------------------------------------------------------------------------------ phase 2
def _gaussian_x0(x_t: torch.Tensor, t: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """E[x0 | x_t] for x0 ~ N(mean, std²), x_t = (1 - t)·x0 + t·noise (exact)."""
    t = t[:, None]
    gain = (1 - t) * std**2 / ((1 - t) ** 2 * std**2 + t**2)
    return mean + gain * (x_t - (1 - t) * mean)


def test_dmd_gradient_moves_a_gaussian_generator_onto_the_real_distribution():
    """Real data N(2, 0.5²); the generator x0 = θ + 0.5·ε starts at θ = -1 and its fake score is the exact denoiser
    of its own distribution. The DMD gradient points from fake to real (sign), vanishes where they agree, and
    gradient descent on θ through `dmd_loss` lands on the real mean."""
    g = torch.Generator().manual_seed(0)
    real_mean, std = 2.0, 0.5
    theta = torch.tensor(-1.0, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=0.5)
    for it in range(100):
        eps = torch.randn(256, 8, generator=g)
        x0_g = theta + std * eps
        t = 0.02 + 0.96 * torch.rand(256, generator=g)
        x_t = add_noise(x0_g.detach(), torch.randn(256, 8, generator=g), t)
        grad = distill.dmd_gradient(x0_g.detach(), _gaussian_x0(x_t, t, real_mean, std),
                                    _gaussian_x0(x_t, t, float(theta.detach()), std))
        if it == 0:
            assert float(grad.mean()) < 0  # descending moves θ up, towards the real mean
        opt.zero_grad()
        distill.dmd_loss(x0_g, grad).backward()
        opt.step()
    assert abs(float(theta.detach()) - real_mean) < 0.05
    x0 = real_mean + std * torch.randn(64, 8, generator=g)
    t = torch.full((64,), 0.5)
    x_t = add_noise(x0, torch.randn(64, 8, generator=g), t)
    same = distill.dmd_gradient(x0, _gaussian_x0(x_t, t, real_mean, std), _gaussian_x0(x_t, t, real_mean, std))
    assert float(same.abs().max()) == 0.0


def test_student_times_match_the_pipeline_schedule():
    assert distill.student_times(2) == pytest.approx([1.0, 0.5])
    assert distill.student_times(4, shift=3.0) == pytest.approx([1.0, 0.9, 0.75, 0.5])


def test_dmd_loop_resumes_after_a_kill_exactly(tmp_path):
    """Two steps, then a new process asked for four resumes at step 2 and ends where an uninterrupted run ends."""
    torch.set_num_threads(1)
    teacher = _teacher()
    kw = dict(conditions=CONDITIONS, guidance=Guidance(2.0, 1.5), student_steps=2, flow_shift=1.0, td=1, seed=3,
              warm_steps=0, fake_updates=2, regression_weight=0.0, lr=1e-3, fake_lr=1e-3, checkpoint_every=2,
              device="cpu", progress=False)
    whole = distill.dmd_loop(_student(teacher), teacher, _Source(), None, tmp_path / "whole", dmd_steps=4, **kw)
    first = distill.dmd_loop(_student(teacher), teacher, _Source(), None, tmp_path / "killed", dmd_steps=2, **kw)
    assert first.resumed_from is None and len(first.history) == 2
    again = distill.dmd_loop(_student(teacher), teacher, _Source(), None, tmp_path / "killed", dmd_steps=4, **kw)
    assert again.resumed_from == 2 and [h["step"] for h in again.history] == [1, 2, 3, 4]
    assert {"dmd", "fake_flow"} <= set(again.history[-1])
    for a, b in zip(whole.student.parameters(), again.student.parameters()):
        torch.testing.assert_close(a, b)
    moved = [float((a - b).detach().abs().max()) for a, b in zip(whole.student.parameters(), _student(teacher).parameters())]
    assert max(moved) > 1e-4  # the student was really trained


def test_regression_warm_start_pulls_the_few_step_sample_onto_the_teachers(tmp_path):
    """Warm steps only (regression onto fixed targets): the student's 2-step sample from the pairs' noise gets closer."""
    torch.set_num_threads(1)
    teacher = _teacher()
    b = _batch(seed=100)
    g = torch.Generator().manual_seed(9)
    x0, m0, _ = distill.joint_inputs(teacher, b, CONDITIONS, 1)

    class _ODE(distill.ODEPairs):
        def regression_batch(self, i, batch_size, ws, td, context, device):
            return {"batch": b, "noise": self.noise, "m_noise": self.m_noise, "clean": self.clean,
                    "m_clean": self.m_clean}

    ode = _ODE(items=np.zeros((2, 2), int), noise=torch.randn(x0.shape, generator=g),
               m_noise=torch.randn(m0.shape, generator=g), clean=x0 + 0.1, m_clean=m0.clone())

    def distance(student) -> float:
        _, _, okw = distill.joint_inputs(student, b, CONDITIONS, 1)
        with torch.no_grad():
            xs, _ = distill.student_sample_chain(student, ode.noise, ode.m_noise, okw,
                                                 Guidance(2.0, 1.5).as_tensor(2), distill.student_times(2))
        return float(((xs - ode.clean) ** 2).mean())

    start = _student(teacher)
    before = distance(start)
    out = distill.dmd_loop(start, teacher, _Source(), ode, tmp_path, conditions=CONDITIONS,
                           guidance=Guidance(2.0, 1.5), student_steps=2, flow_shift=1.0, td=1, seed=3, warm_steps=30,
                           dmd_steps=0, fake_updates=1, regression_weight=0.0, lr=3e-3, fake_lr=1e-3,
                           checkpoint_every=100, device="cpu", progress=False)
    assert all(h["phase"] == "warm" and "dmd" not in h for h in out.history)
    assert distance(out.student) < 0.5 * before


# ------------------------------------------------------------------------------------------------ checkpoints
def test_student_is_a_normal_pipeline_with_its_own_step_count_and_one_pass_per_step(tiny_cfg, tmp_path):
    from unittest import mock

    from avatarv.inference.pipeline import load_pipeline
    from avatarv.models.vae import AvatarVideoVAE

    torch.manual_seed(0)
    vae = AvatarVideoVAE(latent_channels=4, base_channels=8, spatial_downsample=4, temporal_downsample=1).eval()
    teacher = _teacher()
    d = _student(teacher).save(tmp_path / "final", vae, tiny_cfg, CONDITIONS, steps=2)
    pipe = load_pipeline(d)
    assert pipe.config.steps == 2 and pipe.transformer.config.guidance_embed
    frames = np.full((9, 32, 32, 3), 128, np.uint8)
    speech = np.sin(np.arange(8000) / 16000 * 2 * np.pi * 200).astype(np.float32) * 0.3
    tr = pipe.transformer
    with mock.patch.object(tr, "forward", wraps=tr.forward) as fwd:
        out = pipe(frames, speech, 16000, measure_motion=False, progress=False, crop="full", generator=torch.Generator().manual_seed(0))
    n_chunks = len(out.latents[0, 0]) // 9 + 1 if len(out.latents[0, 0]) > 9 else 1
    assert fwd.call_count == 2 * n_chunks  # one pass per step: guidance is an input
    assert all(c.kwargs["guidance"].shape == (1, 2) for c in fwd.call_args_list)


def test_a_missing_or_wrong_teacher_is_one_line_naming_the_path(tiny_cfg, tmp_path):
    from avatarv.errors import InputError
    from avatarv.models.vae import AvatarVideoVAE

    with pytest.raises(InputError, match="no teacher pipeline") as e:
        distill.load_teacher(tmp_path / "nothing")
    assert str(tmp_path / "nothing") in str(e.value) and "\n" not in str(e.value)
    vae = AvatarVideoVAE(latent_channels=4, base_channels=8, spatial_downsample=4, temporal_downsample=1).eval()
    a2v = ConditionSpec(reference=False, motion=False, first_frame_bridge=True)
    d = _teacher().save(tmp_path / "a2v", vae, tiny_cfg, a2v)
    with pytest.raises(InputError, match="not trained with audio and reference"):
        distill.load_teacher(d)
    student_dir = _student(_teacher()).save(tmp_path / "student", vae, tiny_cfg, CONDITIONS)
    with pytest.raises(InputError, match="already CFG-distilled"):
        distill.load_teacher(student_dir)


def test_teacher_branches_share_audio_and_reference_and_equal_three_full_calls():
    """The guided teacher computes audio features and the reference cache once; the result equals combining three
    whole-generator calls (full, no audio, neither) by hand."""
    teacher = _teacher()
    x0, m0, kw = distill.joint_inputs(teacher, _batch(), CONDITIONS, 1)
    t, off = torch.tensor([0.3, 0.8]), torch.ones(2, dtype=torch.bool)
    wa, wr = torch.tensor([2.0, 3.0]), torch.tensor([1.5, 1.0])
    got, _ = distill.teacher_velocity(teacher, x0, m0, t, kw, Guidance(wa, wr))
    full, _ = distill.velocity(teacher, x0, m0, t, kw)
    ref, _ = distill.velocity(teacher, x0, m0, t, kw, drop_audio=off)
    none, _ = distill.velocity(teacher, x0, m0, t, kw, drop_audio=off, drop_reference=off)
    w = lambda v: v.view(2, 1, 1, 1, 1)
    torch.testing.assert_close(got, none + w(wr) * (ref - none) + w(wa) * (full - ref))
    assert not torch.allclose(full, ref, atol=1e-4)  # the branches differ: the check is not vacuous
