"""Cascade step 7 (seed: visual quality): sharpness of the face and detail of the frame.

- sharpness: variance of the Laplacian of the grey face crop resampled to 96x96 (so face size does not change
  the scale of the measure); blur and heavy compression push it down.
- detail_ratio: share of the frame's spectral energy above 1/4 cycle/px relative to the 1/10-1/4 band; an
  upscaled low-resolution video has almost nothing in the top band even when its edges look crisp.
- piqe (optional, `quality_metric: piqe`): pyiqa's weight-free PIQE no-reference score (lower is better).
"""

from __future__ import annotations

import functools

import numpy as np

from .checks import Check, fail, ok

NAME = "quality"
CROP = 96


def face_sharpness(frame: np.ndarray, box) -> float:
    import cv2

    crop = box.scale(1.2).crop(frame)
    if crop.size == 0:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (CROP, CROP), interpolation=cv2.INTER_AREA if min(grey.shape) > CROP else cv2.INTER_CUBIC)
    return float(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F).var())


def detail_ratio(frame: np.ndarray) -> float:
    grey = frame.astype(np.float64).mean(axis=2)
    grey -= grey.mean()
    power = np.abs(np.fft.fft2(grey * np.outer(np.hanning(grey.shape[0]), np.hanning(grey.shape[1])))) ** 2
    fy = np.fft.fftfreq(grey.shape[0])[:, None]
    fx = np.fft.fftfreq(grey.shape[1])[None, :]
    r = np.sqrt(fx**2 + fy**2)
    mid = power[(r >= 0.1) & (r < 0.25)].sum()
    return float(power[r >= 0.25].sum() / mid) if mid > 0 else 0.0


@functools.lru_cache(maxsize=1)
def _piqe():
    import pyiqa

    return pyiqa.create_metric("piqe", device="cpu")


def piqe(frame: np.ndarray) -> float:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        return float(_piqe()(x).item())


def check(ctx) -> Check:
    c, fp = ctx.cfg, ctx.faces
    span = fp.span()
    if fp.main is None or span.size == 0:
        return fail(NAME, "no face to assess")
    picks = span[np.linspace(0, span.size - 1, num=min(5, span.size)).round().astype(int)]
    v = dict(sharpness=float(np.median([face_sharpness(ctx.frames[t], fp.box(t)) for t in picks])),
             detail_ratio=float(np.median([detail_ratio(ctx.frames[t]) for t in picks[::2]])))
    if c.quality_metric == "piqe":
        v["piqe"] = float(np.median([piqe(ctx.frames[t]) for t in picks[::2]]))
    if v["sharpness"] < c.min_sharpness:
        return fail(NAME, f"blurry face: sharpness {v['sharpness']:.1f} < {c.min_sharpness}", **v)
    if v["detail_ratio"] < c.min_detail_ratio:
        return fail(NAME, f"low resolution: detail ratio {v['detail_ratio']:.3f} < {c.min_detail_ratio}", **v)
    if c.quality_metric == "piqe" and v["piqe"] > c.max_piqe:
        return fail(NAME, f"low quality: PIQE {v['piqe']:.1f} > {c.max_piqe}", **v)
    return ok(NAME, **v)
