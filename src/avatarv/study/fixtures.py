"""A tiny self-contained study (a few 1 s, 64 px H.264 clips + a manifest) for tests and demos of the app.

Real clips show a smooth moving disc; "generated" ones a jittery square, so a screenshot shows which is which.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..media import write_video


def _clip(kind: str, hue: int, n: int = 25, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    frames = np.zeros((n, size, size, 3), np.uint8)
    base = np.array([(hue * 67) % 200 + 40, (hue * 131) % 200 + 40, (hue * 29) % 200 + 40], np.uint8)
    for t in range(n):
        frames[t] = base // 3
        cx, cy = size / 2 + 12 * np.sin(2 * np.pi * t / n), size / 2
        if kind == "real":
            frames[t][(xx - cx) ** 2 + (yy - cy) ** 2 < 144] = base
        else:
            j = (t * 7) % 9 - 4
            frames[t, 20 + j : 44 + j, int(cx) - 12 : int(cx) + 12] = base
    return frames


def make_demo_media(media_root: str | Path) -> dict[str, str]:
    """Write two identities × (real, gen_x, gen_y) clips; return {name: path relative to media_root}."""
    media_root = Path(media_root)
    audio = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    out = {}
    for ident in (1, 2):
        for i, system in enumerate(("real", "gen_x", "gen_y")):
            rel = f"clips/id{ident}_{system}.mp4"
            write_video(media_root / rel, _clip("real" if system == "real" else "gen", ident * 3 + i), 25, audio, 16000)
            out[f"id{ident}_{system}"] = rel
    return out


def make_demo_manifest(media_root: str | Path) -> Path:
    """A manifest with 2 Turing, 2 Likert and 2 pairwise cases over `make_demo_media`'s clips (written as JSON)."""
    m = make_demo_media(media_root)
    cases = []
    for ident in (1, 2):
        cases += [
            {"case_id": f"turing_{ident}", "kind": "turing", "video_a": m[f"id{ident}_real"], "system_a": "real",
             "video_b": m[f"id{ident}_gen_x"], "system_b": "gen_x", "identity": f"id{ident}"},
            {"case_id": f"likert_{ident}", "kind": "likert", "video_a": m[f"id{ident}_gen_{'xy'[ident - 1]}"],
             "system_a": f"gen_{'xy'[ident - 1]}", "identity": f"id{ident}"},
            {"case_id": f"pairwise_{ident}", "kind": "pairwise", "video_a": m[f"id{ident}_gen_x"], "system_a": "gen_x",
             "video_b": m[f"id{ident}_gen_y"], "system_b": "gen_y", "identity": f"id{ident}"},
        ]
    path = Path(media_root) / "manifest.json"
    path.write_text(json.dumps(cases, indent=1))
    return path
