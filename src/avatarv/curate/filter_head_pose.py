"""Cascade step 6 (seed: head-pose range): the speaker must mostly face the camera.

Measured as the median |yaw proxy| of the main track's 68-point landmarks (nose offset from the jaw centre over
half the face width: 0 frontal, 1 profile).
"""

from __future__ import annotations

import numpy as np

from .checks import Check, fail, ok

NAME = "head_pose"


def check(ctx) -> Check:
    c, yaw = ctx.cfg, ctx.faces.yaw
    if np.all(np.isnan(yaw)):
        return fail(NAME, "no landmarks")
    v = float(np.nanmedian(np.abs(yaw)))
    if v > c.max_abs_yaw:
        return fail(NAME, f"head turned away: |yaw| {v:.2f} > {c.max_abs_yaw}", yaw_abs=v)
    return ok(NAME, yaw_abs=v)
