"""Cascade step 5 (seed: face size): the main face must be big enough for identity and lip detail.

Measured as the median box side (sqrt of area, px) of the main track.
"""

from __future__ import annotations

import numpy as np

from .checks import Check, fail, ok

NAME = "face_size"


def check(ctx) -> Check:
    c, main = ctx.cfg, ctx.faces.main
    if main is None:
        return fail(NAME, "no face track")
    px = float(np.median([b.side for b in main.boxes]))
    if px < c.min_face_px:
        return fail(NAME, f"face too small: {px:.0f} px < {c.min_face_px:.0f} px", face_px=px)
    return ok(NAME, face_px=px)
