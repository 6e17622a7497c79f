"""Classifier-free guidance on audio and reference, separately weighted (seed: "CFG on audio and reference").

Three branches share the one cached reference (only their conditioning differs):
  v_none = v(no reference, no audio),  v_ref = v(reference, no audio),  v_full = v(reference, audio)
  v = v_none + w_ref·(v_ref - v_none) + w_audio·(v_full - v_ref)
(the nested form of InstructPix2Pix / multi-condition CFG: w_ref pushes appearance toward the reference, w_audio
pushes lips and motion toward the speech). w = 1 for both gives v_full; a branch whose weight makes it cancel
is skipped. The weights may also be per-sample tensors (B,) (a CFG-distillation teacher at sampled weights).
A CFG-distilled student takes (w_audio, w_ref) as an input instead and runs one branch (`as_tensor`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Guidance:
    audio: float | torch.Tensor = 1.0
    reference: float | torch.Tensor = 1.0

    def as_tensor(self, batch: int, device=None) -> torch.Tensor:
        """(B, 2) [audio, reference] weights: the guidance input of a CFG-distilled transformer."""
        w = torch.stack(torch.broadcast_tensors(torch.as_tensor(self.audio, dtype=torch.float32),
                                                torch.as_tensor(self.reference, dtype=torch.float32)), -1)
        return w.reshape(-1, 2).expand(batch, 2).to(device)


def _is_one(w) -> bool:
    return not torch.is_tensor(w) and w == 1.0


def _weight(w, like: torch.Tensor):
    return w.to(like).reshape(-1, *([1] * (like.dim() - 1))) if torch.is_tensor(w) else w


def guided_velocity(predict: Callable[[bool, bool], tuple[torch.Tensor, torch.Tensor | None]], g: Guidance):
    """predict(use_reference, use_audio) -> (video velocity, motion velocity or None); returns the guided pair."""
    full = predict(True, True)
    if _is_one(g.audio) and _is_one(g.reference):
        return full
    ref = predict(True, False)
    none = ref if _is_one(g.reference) else predict(False, False)

    def combine(n, r, f):
        if f is None:
            return None
        return n + _weight(g.reference, f) * (r - n) + _weight(g.audio, f) * (f - r)

    return tuple(combine(n, r, f) for n, r, f in zip(none, ref, full))
