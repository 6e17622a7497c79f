"""Known-answer validation of the metrics, run inside stage 10_eval and reported next to the leaderboard:
a metric earns its column only by measuring what it claims.

- sync: offsets recovered on clips shifted by known amounts; confidence vs |shift|; swapped audio.
- identity: ROC AUC same vs different person, on corpus clips and on real package photos.
- quality: each no-reference metric must get worse step by step under blur, noise and JPEG.
"""

from __future__ import annotations

import numpy as np

from . import identity, quality
from .real_photos import augment, package_face_photos
from .sync_expert import SyncExpert, prepare, sync_scores

SHIFTS = (-6, -4, -2, -1, 0, 1, 2, 4, 6)
LEVELS = {"blur": (0.0, 0.7, 1.4, 2.8), "noise": (0.0, 4.0, 8.0, 16.0), "jpeg": (100, 60, 30, 10)}


def shift_audio(audio: np.ndarray, frames: int, sample_rate: int, fps: float = 25.0) -> np.ndarray:
    """Delay (> 0) or advance (< 0) audio by whole video frames, same length (silence fills the gap)."""
    k = int(round(frames * sample_rate / fps))
    if k == 0:
        return audio.copy()
    out = np.zeros_like(audio)
    if k > 0:
        out[k:] = audio[:-k]
    else:
        out[:k] = audio[-k:]
    return out


def validate_sync(model: SyncExpert, clips: list[tuple[np.ndarray, np.ndarray, int, np.ndarray | None]],
                  shifts=SHIFTS, max_offset: int = 8) -> dict:
    """clips: (frames, audio, sample_rate, boxes or None). Offset hit rate (±1), mean conf per shift, swap test."""
    rows = []
    prepared_audio = []
    for frames, audio, sr, boxes in clips:
        for s in shifts:
            r = sync_scores(model, prepare(frames, shift_audio(audio, s, sr), sr, boxes), max_offset)
            rows.append({"shift": s, "offset": r["offset"], "conf": r["conf_at_zero"], "lse_c": r["lse_c"]})
        prepared_audio.append((audio, sr))
    swapped, synced = [], []
    for i, (frames, audio, sr, boxes) in enumerate(clips):
        other, osr = prepared_audio[(i + 1) % len(clips)]
        if len(clips) < 2 or osr != sr:
            continue
        o = np.resize(other, len(audio)) if len(other) < len(audio) else other[: len(audio)]
        swapped.append(sync_scores(model, prepare(frames, o, sr, boxes), max_offset))
        synced.append(next(r for r in rows[i * len(shifts) : (i + 1) * len(shifts)] if r["shift"] == 0))
    conf = {s: float(np.mean([r["conf"] for r in rows if r["shift"] == s])) for s in shifts}
    by_abs = {}
    for s, c in conf.items():
        by_abs.setdefault(abs(s), []).append(c)
    abs_conf = {k: float(np.mean(v)) for k, v in sorted(by_abs.items())}
    vals = list(abs_conf.values())
    chance = float(np.mean([r["conf_at_zero"] for r in swapped])) if swapped else 0.0
    drop_until = 0
    for (a, ca), (b, cb) in zip(list(abs_conf.items()), list(abs_conf.items())[1:]):
        if cb >= ca:
            break
        drop_until = b
    return {
        "conf_drops_until_shift": drop_until,  # strictly falling confidence from 0 up to this |shift|
        # beyond the sync peak the confidence follows the speech envelope's own rhythm; it must stay below |shift|=1
        "conf_beyond_below_shift1": bool(all(c < abs_conf.get(1, np.inf) for s, c in abs_conf.items() if s > max(drop_until, 1))),
        "chance_conf": chance,
        "offset_within_1": float(np.mean([abs(r["offset"] - r["shift"]) <= 1 for r in rows])),
        "offset_exact": float(np.mean([r["offset"] == r["shift"] for r in rows])),
        "conf_by_abs_shift": abs_conf,
        "conf_monotone": bool(all(a > b for a, b in zip(vals, vals[1:]))),
        "swap_lse_c": float(np.mean([r["lse_c"] for r in swapped])) if swapped else float("nan"),
        "synced_lse_c": float(np.mean([r["lse_c"] for r in synced])) if synced else float("nan"),
        "swap_conf": float(np.mean([r["conf_at_zero"] for r in swapped])) if swapped else float("nan"),
        "n_clips": len(clips),
    }


def validate_identity_photos(n_views: int = 4, seed: int = 0, backend: str = "dlib", model_path: str = "") -> dict:
    """ROC AUC on the real package photos: views of one photo = same person, other photos = different."""
    rng = np.random.default_rng(seed)
    embs, labels = [], []
    for p in package_face_photos():
        for v in range(n_views):
            img = p.image if v == 0 else augment(p.image, p.box, rng)
            embs.append(identity.embed_photo(img, p.box, backend, model_path))
            labels.append(p.name)
    scores, same = identity.pair_scores(np.stack(embs), labels)
    return {"auc": identity.roc_auc(scores, same), "n_people": len(package_face_photos()), "n_pairs": len(scores),
            "same_mean": float(scores[same].mean()), "diff_mean": float(scores[~same].mean())}


def validate_identity_clips(embeddings: np.ndarray, labels: list[str], scenes: list[str]) -> dict:
    """ROC AUC on clip centroids; 'same' pairs must come from different scenes (the cross-scene question)."""
    scores, same = identity.pair_scores(embeddings, labels)
    i, j = np.triu_indices(len(labels), 1)
    sc = np.asarray(scenes)
    keep = ~same | (sc[i] != sc[j])
    scores, same = scores[keep], same[keep]
    return {"auc": identity.roc_auc(scores, same), "n_pairs": int(len(scores)), "n_same": int(same.sum()),
            "same_mean": float(scores[same].mean()) if same.any() else float("nan"),
            "diff_mean": float(scores[~same].mean())}


def validate_quality(frames: list[np.ndarray], levels=LEVELS, metrics=("piqe", "niqe", "brisque")) -> dict:
    """Mean score per distortion level; `monotone[kind][metric]` = every step strictly worse."""
    table: dict = {}
    mono: dict = {}
    for kind, lv in levels.items():
        table[kind] = {}
        for m in metrics:
            vals = [float(np.mean([quality.METRICS[m](quality.degrade(f, kind, l, seed=i)) for i, f in enumerate(frames)]))
                    for l in lv]
            table[kind][m] = vals
            worse = [(b > a) if quality.LOWER_IS_BETTER[m] else (b < a) for a, b in zip(vals, vals[1:])]
            mono.setdefault(kind, {})[m] = bool(all(worse))
    return {"levels": {k: list(v) for k, v in levels.items()}, "scores": table, "monotone": mono}
