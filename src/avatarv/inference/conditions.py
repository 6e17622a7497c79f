"""How the generator is conditioned: the one place that builds what the DiT sees besides its noisy window.

Seed: Sparse Reference Attention (clean reference tokens in a cached K/V), the motion representation stream
(reference motion tokens and the reference clip's motion history carry the person's style), plus two parts beyond
the seed, the frame condition (a clean start frame concatenated to every generated frame) and the condition prior
whose mean follows the head (models/dit.py prior_velocity, models/motion_plan.py).

`ConditionSpec` says which conditions a generator was trained with; every stage saves it inside its pipeline
(`AvatarVPipeline.config.conditions`), so sampling feeds the transformer exactly as its stage trained it.
`WindowConditions` is what one window gets. Training builds it by teacher forcing (`teacher_forced`: the clip's
start frame, the target's own head shift) and sampling from the reference (`from_reference`: the reference's first
frame, a planned head shift from inference/motion_planner.py); both go through the same helpers below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models.latent_time import pool_to_latent_rate
from ..models.motion_plan import head_shift, shifted_condition


@dataclass(kw_only=True)
class ConditionSpec:
    """Which conditions a stage trains the generator with (and so which ones sampling must feed it)."""

    text: bool = False  # caption cross-attention (stage 1)
    audio: bool = True  # speech cross-attention (stage 2 on)
    reference: bool = True  # Sparse Reference Attention over a cached reference (stage 3 on)
    motion: bool = True  # motion stream: reference motion tokens in, generated motion tokens denoised jointly
    first_frame_bridge: bool = False  # the first latent frame is given clean (stage 2: the face image opens the clip)
    start_frame: bool = True  # the frame condition: a clean start frame for every generated frame
    motion_context_frames: int = 0  # video frames of the reference clip's motion history (a motion-only segment)
    motion_shift: bool = False  # the condition prior's mean follows the head's displacement
    motion_calibration: dict | None = None  # measured (MediaPipe) → trained motion units (models/motion.py)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ConditionSpec:
        d = dict(d or {})
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown generator conditions {sorted(unknown)}")
        return cls(**d)


@dataclass
class WindowConditions:
    """Everything one window's DiT call gets besides the noisy latents/motion, timestep, audio and bridge frames.

    Motion tensors are in the transformer's token units (`normalize_motion`); `ref_motion` at latent or video rate,
    `ref_context` at latent rate (`motion_history_tokens`)."""

    cond_frame: torch.Tensor | None = None  # (B, C, H, W) the frame condition
    prior_mean: torch.Tensor | None = None  # (B, C, T, H, W) the condition prior's mean per frame (None: cond_frame)
    ref_latents: torch.Tensor | None = None  # (B, C, Tr, H, W) clean reference latents
    ref_motion: torch.Tensor | None = None  # (B, Tr', 16) the reference window's motion tokens
    ref_context: torch.Tensor | None = None  # (B, Tm, 16) the reference clip's motion history tokens
    text: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    anchors: list[tuple[torch.Tensor, torch.Tensor | None]] = field(default_factory=list)  # global appearance anchor

    def segments(self) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
        """The reference segments in cache order: the video reference, the motion-only history, the anchors."""
        if self.ref_latents is None:
            return []
        history = [(None, self.ref_context)] if self.ref_context is not None else []
        return [(self.ref_latents, self.ref_motion), *history, *self.anchors]

    def dit_kwargs(self) -> dict[str, Any]:
        """The per-call keyword arguments of AvatarTransformer3DModel.forward (the reference goes in as a cache)."""
        return {"cond_frame": self.cond_frame, "prior_mean": self.prior_mean, "text": self.text,
                "text_mask": self.text_mask}


def reference_tokens(transformer, spec: ConditionSpec, ref_motion: torch.Tensor | None,
                     history: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Raw (models/motion.py units) reference motion and video-rate motion history → their token units, or None
    where the spec has no motion stream / no history."""
    if not spec.motion or ref_motion is None:
        return None, None
    tokens = transformer.normalize_motion(ref_motion)
    if spec.motion_context_frames <= 0 or history is None:
        return tokens, None
    return tokens, transformer.motion_history_tokens(history[:, : spec.motion_context_frames])


def prior_mean(transformer, spec: ConditionSpec, cond_frame: torch.Tensor | None,
               shift: torch.Tensor | None) -> torch.Tensor | None:
    """The condition prior's mean per frame: the start frame translated by the head's displacement `shift`
    (B, T, 2) in latent px; None (the prior stays at the start frame) without a shift or a prior to move."""
    if cond_frame is None or shift is None or not spec.motion_shift or not transformer.config.condition_prior_var:
        return None
    return shifted_condition(cond_frame, shift.to(cond_frame.device)).to(cond_frame.dtype)


def teacher_forced(transformer, spec: ConditionSpec, batch: dict[str, Any], n_frames: int, td: int, *,
                   text: tuple[torch.Tensor, torch.Tensor] | None = None) -> WindowConditions:
    """Training: the clip's start frame as the frame condition, the target's own head shift moving the prior (what
    sampling replaces by a plan), the cross-scene reference window and its clip's motion history."""
    c = WindowConditions()
    if spec.start_frame:
        c.cond_frame = batch["start_latent"].float()
        if spec.motion_shift:
            target = pool_to_latent_rate(batch["motion"].float(), td)[:, :n_frames]
            shift = head_shift(target, batch["start_motion"].float(), c.cond_frame.shape[-1])
            c.prior_mean = shifted_condition(c.cond_frame, shift)
    if spec.reference:
        c.ref_latents = batch["ref_latents"].float()
        history = batch.get("ref_motion_context")
        c.ref_motion, c.ref_context = reference_tokens(
            transformer, spec, batch["ref_motion"].float(), None if history is None else history.float())
    if spec.text and text is not None:
        c.text, c.text_mask = text
    return c


def from_reference(transformer, spec: ConditionSpec, ref_latents: torch.Tensor, ref_motion: torch.Tensor | None = None,
                   history: torch.Tensor | None = None) -> WindowConditions:
    """Sampling: the reference's first latent frame is the frame condition of every window (training conditions
    every window of a clip on its start frame), the reference segments as trained. The prior's mean per window comes
    from `prior_mean` with a planned shift (inference/motion_planner.py)."""
    tokens, context = reference_tokens(transformer, spec, ref_motion, history)
    return WindowConditions(cond_frame=ref_latents[:, :, 0], ref_latents=ref_latents if spec.reference else None,
                            ref_motion=tokens, ref_context=context)
