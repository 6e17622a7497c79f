"""Long-video drift (seed: chunked long-video generation "with a global appearance anchor ... keeps identity
consistent across all chunks"): identity similarity and colour shift of every chunk against the first.

Each chunk (`chunk_seconds`, the generator's chunk length) gets a face-identity centroid (a few frames) and a
mean face colour in CIE Lab; we report per-chunk cosine to chunk 0, per-chunk ΔE2000 to chunk 0, the worst of
each, and least-squares slopes per minute (drift rate) so clips of different lengths compare.
"""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

from ..faces import FaceTrack, face_crops
from .identity import centroid, embed_clip


def _slope_per_minute(t_s: np.ndarray, y: np.ndarray) -> float:
    if len(y) < 2:
        return 0.0
    return float(np.polyfit(t_s / 60.0, y, 1)[0])


def drift_metrics(frames: np.ndarray, track: FaceTrack, fps: float = 25.0, chunk_seconds: float = 2.0,
                  frames_per_chunk: int = 2, backend: str = "dlib", model_path: str = "") -> dict:
    n = len(frames)
    step = max(1, int(round(chunk_seconds * fps)))
    starts = list(range(0, n, step))
    if len(starts) > 1 and n - starts[-1] < step // 2:  # drop a sliver at the end
        starts = starts[:-1]
    sims, de, times = [], [], []
    first_id, first_lab = None, None
    for s in starts:
        e = min(n, s + step)
        idx = np.unique(np.linspace(s, e - 1, min(frames_per_chunk, e - s)).round().astype(int))
        c = centroid(embed_clip(frames, track, backend=backend, model_path=model_path, indices=idx))
        crops = face_crops(frames[s:e:max(1, (e - s) // 5)], track.boxes[s:e:max(1, (e - s) // 5)], 64, 0.8)
        lab = rgb2lab(crops.reshape(-1, 64, 3).astype(np.float32) / 255.0).reshape(-1, 3).mean(0)
        if first_id is None:
            first_id, first_lab = c, lab
        sims.append(float(c @ first_id))
        de.append(float(deltaE_ciede2000(first_lab[None], lab[None])[0]))
        times.append((s + e) / 2 / fps)
    t = np.array(times)
    return {
        "chunks": len(starts),
        "drift_id_sim_chunks": sims, "drift_delta_e_chunks": de,
        "drift_id_sim_min": float(min(sims)), "drift_delta_e_max": float(max(de)),
        "drift_id_sim_per_min": _slope_per_minute(t, np.array(sims)),
        "drift_delta_e_per_min": _slope_per_minute(t, np.array(de)),
    }
