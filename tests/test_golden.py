"""Golden numbers: pin the generator's training loss and the inference pipeline's output on tiny seeded models.

These literals are NOT "correct" values — they record what the code computed when they were written, so that a
refactor can prove it kept behaviour (same seeds, same arithmetic → same numbers). Tolerances (rtol 2e-3,
atol 1e-5) absorb CPU-kernel differences between machines; a real change of the loss or the sampler moves them
far more. If a change is MEANT to alter behaviour, regenerate the literals and say so in the commit:

    AVATARV_PRINT_GOLDEN=1 .venv/bin/python -m pytest -x -q -s -p no:randomly tests/test_golden.py

prints every pinned value (as Python literals to paste here) instead of asserting. Recorded on commit 79c6767
(before the config/conditions refactor); only `_generator`, `golden_pipe` and `_generate` touch construction APIs —
an API refactor adapts those and must leave every literal as it is.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from avatarv.inference.conditions import ConditionSpec
from avatarv.models.audio_encoder import AudioEncoder
from avatarv.models.dit import AvatarTransformer3DModel
from avatarv.train.generator import AvatarGenerator
from avatarv.train.objectives import FlowSpec, flow_loss

PRINT = os.environ.get("AVATARV_PRINT_GOLDEN") == "1"
RTOL, ATOL = 2e-3, 1e-5
SR = 16000
T = 3  # latent frames = video frames (td 1)


def _pin(name: str, got, expected) -> None:
    got = np.asarray(got, np.float64)
    if PRINT:
        print(f"\n{name} = [{', '.join(f'{v:.9g}' for v in got.ravel())}]")
        return
    np.testing.assert_allclose(got, np.asarray(expected, np.float64), rtol=RTOL, atol=ATOL, err_msg=name)


def _pin_dict(name: str, got: dict, expected: dict) -> None:
    if PRINT:
        print(f"\n{name} = {{{', '.join(f'{k!r}: {v:.9g}' for k, v in got.items())}}}")
        return
    assert set(got) == set(expected), name
    for k, want in expected.items():
        np.testing.assert_allclose(got[k], want, rtol=RTOL, atol=ATOL, err_msg=f"{name}[{k}]")


# ------------------------------------------------------------------------------------------------ training loss
def _generator(seed: int, **dit_config) -> AvatarGenerator:
    torch.manual_seed(seed)
    dit = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=16, temporal_downsample=1,
                                   sample_size=32, **dit_config)
    return AvatarGenerator(dit, AudioEncoder(audio_dim=16, layers=1, heads=2, mel_mean=-8.0))


def _sft_batch() -> dict:
    from avatarv.models.motion_plan import DX, DY

    g = torch.Generator().manual_seed(5)
    r = lambda *s: torch.randn(*s, generator=g)
    motion = 0.03 * r(2, T, 16) + 0.5
    motion[:, :, DX] += torch.linspace(0, 0.4, T)  # the head drifts: the condition prior's mean really moves
    motion[:, :, DY] -= torch.linspace(0, 0.2, T)
    start = r(2, 4, 8, 8)  # a clip: every frame (and the reference) is the start frame plus a little change
    return {"latents": start[:, :, None] + 0.3 * r(2, 4, T, 8, 8), "mel": r(2, 80, 4 * T) - 8, "motion": motion,
            "ref_latents": start[:, :, None] + 0.3 * r(2, 4, 3, 8, 8), "ref_motion": 0.03 * r(2, 3, 16) + 0.5,
            "ref_motion_context": 0.03 * r(2, 6, 16) + 0.5,
            "start_latent": start, "start_motion": motion[:, 0] - 0.05,
            "face_box": torch.tensor([0.2, 0.1, 0.8, 0.9]).expand(2, T, 4).clone(),
            "mouth_box": torch.tensor([0.3, 0.55, 0.7, 0.85]).expand(2, T, 4).clone()}


SFT_STATS = dict(motion_mean=[0.5] * 16, motion_std=[0.05] * 16)

GOLDEN_SFT_LOSSES = [6.88610888, 7.71134663, 8.48364258, 5.80806875, 7.03344393, 5.3152709, 5.82515001, 4.06557322,
                     5.2619586, 6.96870565, 4.74541092, 3.94426346, 5.20245743, 6.57477951, 6.22030115, 5.2355361,
                     2.99607539, 5.30374193, 6.24495459, 4.21451807]
GOLDEN_SFT_TERMS0 = {'flow': 1.27726245, 'face': 1.36814415, 'lip': 1.2989254, 'motion': 3.28570271}
GOLDEN_A2V_TOTAL = [3.77366734]
GOLDEN_A2V_TERMS = {'flow': 2.13708639, 'lip': 1.63658094}


def test_golden_sft_training_loss():
    """20 AdamW steps of the SFT objective (audio, reference + motion context, motion stream, start frame, condition
    prior moved by the head shift, face/lip/motion terms, 10% condition dropout) on one fixed batch."""
    torch.set_num_threads(1)
    gen = _generator(4, frame_condition=True, condition_prior_var=0.1, **SFT_STATS).train()
    batch = _sft_batch()
    conditions = ConditionSpec(audio=True, reference=True, motion=True, start_frame=True, motion_context_frames=6,
                               motion_shift=True)
    spec = FlowSpec(conditions, losses={"face": 1.0, "lip": 2.0, "motion": 0.5})
    opt = torch.optim.AdamW(gen.parameters(), lr=1e-3)
    rng = torch.Generator().manual_seed(7)
    losses, terms0 = [], None
    for _ in range(20):
        total, terms = flow_loss(gen, batch, rng, spec, td=1)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
        terms0 = terms if terms0 is None else terms0
    assert set(terms0) == {"flow", "face", "lip", "motion"}
    _pin("GOLDEN_SFT_LOSSES", losses, GOLDEN_SFT_LOSSES)
    _pin_dict("GOLDEN_SFT_TERMS0", terms0, GOLDEN_SFT_TERMS0)


def test_golden_a2v_loss():
    """One evaluation of the A2V objective: audio, the first latent frame a clean bridge, start frame, lip term."""
    torch.set_num_threads(1)
    gen = _generator(11, frame_condition=True).train()
    batch = _sft_batch()
    conditions = ConditionSpec(audio=True, reference=False, motion=False, first_frame_bridge=True, start_frame=True)
    spec = FlowSpec(conditions, losses={"lip": 1.0})
    total, terms = flow_loss(gen, batch, torch.Generator().manual_seed(3), spec, td=1)
    assert set(terms) == {"flow", "lip"}
    _pin("GOLDEN_A2V_TOTAL", [float(total.detach())], GOLDEN_A2V_TOTAL)
    _pin_dict("GOLDEN_A2V_TERMS", terms, GOLDEN_A2V_TERMS)


# ------------------------------------------------------------------------------------------------ pipeline
def _reference(n: int = 9, size: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = [np.stack([128 + 90 * np.sin(x / 7 + 0.3 * k), 128 + 90 * np.cos(y / 9 - 0.2 * k),
                        128 + 60 * np.sin((x + y) / 11)], -1) for k in range(n)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def _audio(seconds: float = 0.52) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _reference_motion(n: int = 30) -> np.ndarray:
    k = np.arange(n, dtype=np.float32)[:, None]
    c = np.arange(16, dtype=np.float32)[None]
    return (0.5 + 0.05 * np.sin(0.4 * k + c) + 0.02 * np.cos(0.13 * k * (c + 1))).astype(np.float32)


@pytest.fixture(scope="module")
def golden_pipe():
    from avatarv.config import load_config
    from avatarv.inference.pipeline import pipeline_from_config
    from avatarv.models.vae import AvatarVideoVAE

    torch.set_num_threads(1)
    cfg = load_config("tiny")  # chunk 9 / bridge 1 / reference 9 latent frames, flow_shift 1, cfg 2.0 / 1.5
    torch.manual_seed(0)
    vae = AvatarVideoVAE(latent_channels=4, base_channels=8, spatial_downsample=4, temporal_downsample=1).eval()
    audio_encoder = AudioEncoder(audio_dim=16, layers=1, heads=2, mel_mean=-8.0).eval()
    dit = AvatarTransformer3DModel(in_channels=4, hidden=32, layers=2, heads=2, audio_dim=16, temporal_downsample=1,
                                   sample_size=32, frame_condition=True, condition_prior_var=0.1,
                                   motion_mean=[0.5] * 16, motion_std=[0.05] * 16).eval()
    with torch.no_grad():  # the frame-condition input starts at zero: give it weight so the pin covers that path
        dit.patch_embed.weight[:, 4 * 4:].normal_(0, 0.05)
    conditions = ConditionSpec(audio=True, reference=True, motion=True, start_frame=True, motion_context_frames=20,
                               motion_shift=True, motion_calibration=None)
    return pipeline_from_config(cfg, vae, dit, audio_encoder, conditions)


def _generate(pipe, **kw):
    torch.set_num_threads(1)
    return pipe(_reference(), _audio(), SR, reference_motion=_reference_motion(), num_inference_steps=3,
                generator=torch.Generator().manual_seed(42), progress=False, crop="full", **kw)


GOLDEN_PIPE_STATS = [0.0863417089, 0.474478513, 0.490019798, 130.688652]  # latents mean, std; motion mean; frames mean
GOLDEN_PIPE_LATENTS = [0.0230180025, 0.378728569, -0.238581091, 0.72002995, 0.408428669, 0.322678477, 0.479399651,
                       0.561190367]
GOLDEN_PIPE_MOTION = [0.48056525, 0.447236031, 0.427009612, 0.432797372, 0.410609484, 0.569995582,  # first frame
                      0.501990438, 0.493891329, 0.470569432, 0.530187786, 0.458467692, 0.36020714]  # last frame


def test_golden_pipeline(golden_pipe):
    """Two chunks (13 latent frames, chunk 9, bridge 1, anchor 1), 3 steps, CFG on audio and reference, frame
    condition + condition prior moved by the motion plan, the reference's motion history as context."""
    assert golden_pipe.conditions.motion_shift and golden_pipe.config.chunk_latent_frames == 9
    out = _generate(golden_pipe)
    assert out.frames.shape == (13, 32, 32, 3) and out.frames.dtype == np.uint8
    assert out.motion.shape == (13, 16) and tuple(out.latents.shape) == (1, 4, 13, 8, 8)
    lat = out.latents.float()
    flat = lat.flatten()
    stats = [float(lat.mean()), float(lat.std()), float(out.motion.mean()), float(out.frames.astype(np.float64).mean())]
    _pin("GOLDEN_PIPE_STATS", stats, GOLDEN_PIPE_STATS)
    _pin("GOLDEN_PIPE_LATENTS", flat[:: flat.numel() // 8][:8].numpy(), GOLDEN_PIPE_LATENTS)
    _pin("GOLDEN_PIPE_MOTION", np.concatenate([out.motion[0, :6], out.motion[-1, :6]]), GOLDEN_PIPE_MOTION)


def test_golden_pipeline_uncached_equals_cached(golden_pipe):
    cached = _generate(golden_pipe)
    uncached = _generate(golden_pipe, use_reference_cache=False)
    torch.testing.assert_close(uncached.latents, cached.latents, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(uncached.motion, cached.motion, rtol=1e-5, atol=1e-5)
