"""`avatarv ingest --in FOLDER --out DIR`: bring real footage into the corpus layout the pipeline reads.

Every video in FOLDER (mp4/mov/mkv/webm/avi/m4v, sorted by name) is brought to the corpus frame rate and sample
rate by the media normaliser (media/normalize.py: any rate, constant or variable, retimed by timestamp; rotation
applied; audio mixed to mono and resampled), cropped to even sizes (or, with --size, centre-cropped square and
resized) and re-encoded as H.264 + AAC into DIR/clips/. DIR/manifest.parquet
gets one row per ingested clip with the synthetic corpus's columns but EMPTY ground truth (no landmarks, poses,
phonemes; only the measured audio energy), so curation, training and evaluation run unchanged on real data.
A file that cannot be used becomes a row of DIR/rejected.parquet (file, reason) — the batch never stops; the
command lists the rejected files at the end and exits non-zero when none was ingested (batch.py).
This is the seed's data-ingestion step for user footage.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from ..batch import reason_of
from ..errors import AvatarVError, InputError
from ..media import normalize_video, write_video

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
REJECTED = "rejected.parquet"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in", dest="inp", required=True, help="folder of videos (searched recursively)")
    p.add_argument("--out", required=True, help="output corpus folder (clips/, manifest.parquet)")
    p.add_argument("--size", type=int, default=0, help="centre-crop square and resize to this side (0 = keep size)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longer videos are cut to this duration")
    p.add_argument("--no-progress", action="store_true")


def _clip_id(path: Path, taken: set[str]) -> str:
    base = "ext_" + (re.sub(r"[^A-Za-z0-9]+", "_", path.stem).strip("_").lower() or "clip")
    cid, k = base, 1
    while cid in taken:
        cid, k = f"{base}_{k}", k + 1
    taken.add(cid)
    return cid


def _reframe(frames: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = frames.shape[1:3]
    if size:
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        sq = frames[:, y0 : y0 + s, x0 : x0 + s]
        interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
        return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in sq])
    return frames[:, : h - h % 2, : w - w % 2]


def ingest_file(src: Path, out_dir: Path, clip_id: str, *, fps: int, sample_rate: int, size: int, max_seconds: float) -> dict:
    """Normalise one video; raises MediaError/InputError (one line, naming the file) when it cannot be used."""
    from .speech import frame_energy

    v = normalize_video(src, fps=fps, sample_rate=sample_rate, max_seconds=max_seconds, fit_audio=True)
    frames = _reframe(v.frames, size)
    n, h, w = frames.shape[:3]
    if min(h, w) < 16:
        raise InputError(src, f"frame size {w}x{h} is too small")
    audio = v.audio if len(v.audio) else None
    rel = f"clips/{clip_id}.mp4"
    write_video(out_dir / rel, frames, fps=fps, audio=audio, sample_rate=sample_rate)
    energy = frame_energy(audio, sample_rate, fps, n) if audio is not None else np.zeros(n, np.float32)
    return {
        "clip_id": clip_id, "path": rel, "identity": "", "identity_source": f"ingest:{src.name}", "scene": 0,
        "scene_key": clip_id, "split": "train", "voice": "", "pitch": 0, "speed": 0, "language": "", "text": "",
        "phonemes": "[]", "fps": fps, "width": int(w), "height": int(h), "n_frames": int(n), "duration": round(n / fps, 4),
        "sample_rate": sample_rate if audio is not None else 0,
        "face_box": [[] for _ in range(n)], "landmarks": [[] for _ in range(n)], "head_pose": [], "head_shift": [],
        "mouth_open": [], "mouth_width": [], "blink": [], "brow": [],
        "audio_energy": [round(float(e), 5) for e in energy], "motion_style": "{}", "distractor": "",
        "av_offset_frames": 0,
        "flags": json.dumps({"source": str(src), "source_fps": round(float(v.source_rate), 3),
                             "source_rate": str(v.source_rate), "variable_rate": v.variable_rate,
                             "rotation": v.rotation, "source_size": list(v.source_size),
                             "source_sample_rate": v.source_sample_rate, "source_channels": v.source_channels}),
        "identity_recipe": "{}", "has_ground_truth": False,
    }


def ingest_folder(inp: str | Path, out: str | Path, *, fps: int = 25, sample_rate: int = 16000, size: int = 0,
                  max_seconds: float = 600.0, progress: bool = True) -> dict:
    """Ingest every video under `inp` into the corpus folder `out` (rejections in `out`/rejected.parquet); returns
    counts."""
    from tqdm.auto import tqdm

    from .synthesize import MANIFEST, write_manifest

    inp, out = Path(inp), Path(out)
    if not inp.is_dir():
        raise InputError(inp, "input folder not found")
    files = sorted(p for p in inp.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise InputError(inp, f"no video files ({', '.join(VIDEO_SUFFIXES)}) in the folder")
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows, rejected, taken = [], [], set()
    for src in tqdm(files, desc="ingest", unit="file", disable=not progress):
        cid = _clip_id(src, taken)
        try:
            rows.append(ingest_file(src, out, cid, fps=fps, sample_rate=sample_rate, size=size, max_seconds=max_seconds))
        except AvatarVError as e:
            rejected.append({"file": str(src), "clip_id": cid, "reason": reason_of(src, e)})
    write_manifest(rows, out / MANIFEST)
    _write_rejected(rejected, out / REJECTED)
    return {"files": len(files), "ingested": len(rows), "rejected": len(rejected)}


def _write_rejected(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..media import atomic_path

    schema = pa.schema([("file", pa.string()), ("clip_id", pa.string()), ("reason", pa.string())])
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)


def main(args: argparse.Namespace) -> int:
    from ..batch import Rejection, finish
    from ..config import load_config

    cfg = load_config(args.profile)
    summary = ingest_folder(args.inp, args.out, fps=cfg.corpus.fps, sample_rate=cfg.corpus.sample_rate, size=args.size,
                            max_seconds=args.max_seconds, progress=not args.no_progress)
    import pandas as pd

    print(json.dumps(summary))
    rejected = pd.read_parquet(Path(args.out) / REJECTED)
    return finish("ingest", [Rejection(f, r) for f, r in zip(rejected.file, rejected.reason)], summary["ingested"],
                  summary["files"], verb="ingested")
