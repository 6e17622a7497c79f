"""Classifier-free guidance on audio and reference, separately weighted (seed: "CFG on audio and reference").

Three branches share the one cached reference (only their conditioning differs):
  v_none = v(no reference, no audio),  v_ref = v(reference, no audio),  v_full = v(reference, audio)
  v = v_none + w_ref·(v_ref - v_none) + w_audio·(v_full - v_ref)
(the nested form of InstructPix2Pix / multi-condition CFG: w_ref pushes appearance toward the reference, w_audio
pushes lips and motion toward the speech). w = 1 for both gives v_full; a branch whose weight makes it cancel
is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Guidance:
    audio: float = 1.0
    reference: float = 1.0


def guided_velocity(predict: Callable[[bool, bool], tuple[torch.Tensor, torch.Tensor | None]], g: Guidance):
    """predict(use_reference, use_audio) -> (video velocity, motion velocity or None); returns the guided pair."""
    full = predict(True, True)
    if g.audio == 1.0 and g.reference == 1.0:
        return full
    ref = predict(True, False)
    none = predict(False, False) if g.reference != 1.0 else ref

    def combine(n, r, f):
        if f is None:
            return None
        return n + g.reference * (r - n) + g.audio * (f - r)

    return tuple(combine(n, r, f) for n, r, f in zip(none, ref, full))
