"""Clip splitting at scene cuts (seed: shot segmentation before the per-clip filters).

A clip rejected only because it holds a cut is not all bad: each shot between cuts can be a clip of its own.
With `split_scene_cuts` on, every shot of at least `min_duration_s` is written as its own mp4 under
DIR2/segments/ and curated like any other clip (clip id `<parent>#<k>`, path relative to the corpus dir).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import CurateConfig
from ..media import normalize_video, write_video


def split_jobs(rows: list[dict], jobs: list[dict], corpus_dir: str | Path, out_dir: str | Path, cfg: CurateConfig) -> list[dict]:
    """Write the shots of clips whose only failure is a scene cut; return their curation jobs."""
    by_id = {j["clip_id"]: j for j in jobs}
    seg_dir = Path(out_dir) / "segments"
    new: list[dict] = []
    for r in rows:
        failures = json.loads(r["all_reasons"])
        if r["stage"] != "scene_cut" or len(failures) != 1:
            continue
        job = by_id[r["clip_id"]]
        v = normalize_video(job["abs_path"])  # the rate the segments were found at (curate/clip.py)
        for k, (a, b) in enumerate(json.loads(r["segments"])):
            if (b - a) / v.fps < cfg.min_duration_s:
                continue
            sr = v.sample_rate
            audio = v.audio[int(round(a / v.fps * sr)) : int(round(b / v.fps * sr))] if v.audio.size else None
            path = write_video(seg_dir / f"{r['clip_id']}_seg{k}.mp4", v.frames[a:b], v.fps, audio, sr or 16000)
            new.append({"clip_id": f"{r['clip_id']}#{k}", "path": os.path.relpath(path.resolve(), Path(corpus_dir).resolve()),
                        "abs_path": str(path.resolve())})
    return new
