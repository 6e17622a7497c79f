"""Cascade step 4 (seed: face detection + single visible speaker): a face must be visible in almost every
sampled frame, and no second face may share the frame for long.

Measured on the tracker's sampled frames: the fraction with at least one face and the fraction with more than
`max_faces` faces (a second person, a poster, a mirror).
"""

from __future__ import annotations

import numpy as np

from .checks import Check, fail, ok

NAME = "face_count"


def check(ctx) -> Check:
    c, fp = ctx.cfg, ctx.faces
    counts = fp.counts
    v = dict(face_frac=float(np.mean(counts >= 1)) if counts.size else 0.0,
             multi_face_frac=float(np.mean(counts > c.max_faces)) if counts.size else 0.0,
             max_faces_seen=float(counts.max(initial=0)), n_tracks=float(len(fp.tracks)))
    if v["face_frac"] < c.min_face_frac:
        return fail(NAME, f"no face: face visible in {v['face_frac']:.2f} of frames < {c.min_face_frac}", **v)
    if v["multi_face_frac"] > c.max_multi_face_frac:
        return fail(NAME, f"several faces: {v['max_faces_seen']:.0f} faces in {v['multi_face_frac']:.2f} of frames "
                          f"> {c.max_multi_face_frac}", **v)
    return ok(NAME, **v)
