"""Build the embedded corpus: plan every clip, render them in a worker pool, write mp4s and manifest.parquet.

Layout (the shared contract): DIR/clips/<clip_id>.mp4 (H.264 25 fps + AAC 16 kHz mono) and DIR/manifest.parquet,
one row per clip with per-frame ground truth. Byte-deterministic: every random draw comes from a seed derived
from (seed, clip/identity/scene labels), the encoder is single-threaded, and rows are sorted by clip_id, so
the same seed and sizes give identical files whatever the worker count. This is the seed's "data" stage,
scaled down: a corpus with identities, scenes, speech and the faults curation must remove.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AvatarVError
from ..media import write_video
from .distractors import KINDS, make_distractor, truncate_file
from .identities import Identity, build_identities, recipe_json, stable_seed

MANIFEST = "manifest.parquet"


@dataclass(frozen=True)
class CorpusSpec:
    """Everything that decides the corpus bytes (the CLI and the DVC stage fill it from cfg.corpus)."""

    identities: int
    scenes: int
    clips_per_scene: int
    seconds: float
    size: int
    seed: int
    fps: int = 25
    sample_rate: int = 16000
    distractor_fraction: float = 0.2
    languages: tuple[str, ...] = ("en-us", "en-gb", "de", "fr", "es")
    holdout_identities: int = 4

    @property
    def n_frames(self) -> int:
        return int(round(self.seconds * self.fps))


@dataclass(frozen=True)
class ClipJob:
    clip_id: str
    identity: int  # index into the identity list
    scene: int
    distractor: str  # '' = clean
    other: int  # intruding identity for distractors that need one (else -1)


def plan(spec: CorpusSpec) -> list[ClipJob]:
    """Clean clips for every (identity, scene, k), plus ~distractor_fraction extra clips cycling through all kinds."""
    if spec.identities < 2 or spec.scenes < 1 or spec.clips_per_scene < 1:
        raise AvatarVError(f"corpus needs >= 2 identities, >= 1 scene and clip; got {spec.identities}/{spec.scenes}/{spec.clips_per_scene}")
    if spec.size % 2 or spec.size < 32:
        raise AvatarVError(f"corpus size must be an even number of pixels >= 32, got {spec.size}")
    jobs = [ClipJob(f"id{i:03d}_s{s}_c{k}", i, s, "", -1)
            for i in range(spec.identities) for s in range(spec.scenes) for k in range(spec.clips_per_scene)]
    n_d = int(round(spec.distractor_fraction * len(jobs)))
    rng = np.random.default_rng(stable_seed(spec.seed, "distractors"))
    slots = [(i, s) for i in range(spec.identities) for s in range(spec.scenes)]
    order = rng.permutation(len(slots))
    count: dict[tuple[int, int], int] = {}
    for d in range(n_d):
        i, s = slots[order[d % len(slots)]]
        k = count.get((i, s), 0)
        count[(i, s)] = k + 1
        other = int((i + 1 + rng.integers(spec.identities - 1)) % spec.identities)
        jobs.append(ClipJob(f"id{i:03d}_s{s}_d{k}", i, s, KINDS[d % len(KINDS)], other))
    return jobs


# --------------------------------------------------------------------------------------------- worker side
_W: dict = {}


def _init_worker(identities: list[Identity], spec: CorpusSpec, out_dir: str) -> None:
    import cv2

    cv2.setNumThreads(1)
    _W.update(identities=identities, spec=spec, out=Path(out_dir))


def _r(x, nd=3) -> list[float]:
    return [round(float(v), nd) for v in np.asarray(x).ravel()]


def _clip_box(b: list[float], w: int, h: int) -> list[float]:
    """Boxes are clipped to the frame like a detector's (landmarks keep their true, possibly outside, place)."""
    return [min(max(b[0], 0), w), min(max(b[1], 0), h), min(max(b[2], 0), w), min(max(b[3], 0), h)]


def _run_job(job: ClipJob) -> dict:
    from .speech import frame_energy

    spec: CorpusSpec = _W["spec"]
    idents: list[Identity] = _W["identities"]
    ident = idents[job.identity]
    kw = dict(n_frames=spec.n_frames, size=spec.size, fps=spec.fps, sample_rate=spec.sample_rate)
    clip_seed = stable_seed(spec.seed, "clip", job.clip_id)
    if job.distractor:
        clip = make_distractor(job.distractor, ident, idents[job.other], job.scene, clip_seed, spec.seed, **kw)
    else:
        from .clips import make_clip

        clip = make_clip(ident, job.scene, clip_seed, spec.seed, **kw)
    rel = f"clips/{job.clip_id}.mp4"
    path = _W["out"] / rel
    write_video(path, clip.frames, fps=spec.fps, audio=clip.audio, sample_rate=spec.sample_rate)
    if job.distractor == "truncated":
        clip.flags["bytes_kept"] = truncate_file(path, clip.flags["keep_fraction"])
    n = len(clip.frames)
    h, w = clip.frames.shape[1:3]
    energy = frame_energy(clip.audio, spec.sample_rate, spec.fps, n) if clip.audio is not None else np.zeros(n)
    split = "holdout" if job.identity >= spec.identities - spec.holdout_identities else "train"
    return {
        "clip_id": job.clip_id, "path": rel, "identity": ident.identity, "identity_source": ident.source,
        "scene": job.scene, "scene_key": f"{ident.identity}_s{job.scene}", "split": split,
        "voice": ident.voice, "pitch": ident.pitch, "speed": ident.speed, "language": ident.language, "text": clip.text,
        "phonemes": json.dumps(clip.phonemes, separators=(",", ":")), "fps": spec.fps, "width": int(w), "height": int(h),
        "n_frames": n, "duration": round(n / spec.fps, 4),
        "sample_rate": spec.sample_rate if clip.audio is not None else 0,
        "face_box": [_r(_clip_box(b, w, h), 2) if len(b) else [] for b in clip.boxes],
        "landmarks": [_r(lm, 2) if lm is not None else [] for lm in clip.landmarks],
        "head_pose": [_r([p.yaw, p.pitch, p.roll]) for p in clip.poses],
        "head_shift": [_r([p.dx * w / 128.0, p.dy * h / 128.0]) for p in clip.poses],
        "mouth_open": _r([p.mouth_open for p in clip.poses], 4), "mouth_width": _r([p.mouth_width for p in clip.poses], 4),
        "blink": _r([p.blink for p in clip.poses], 4), "brow": _r([p.brow for p in clip.poses], 4),
        "audio_energy": _r(energy, 5),
        "motion_style": json.dumps(ident.style.to_dict(), sort_keys=True),
        "distractor": job.distractor, "av_offset_frames": int(clip.av_offset_frames),
        "flags": json.dumps(clip.flags, sort_keys=True),
        "identity_recipe": recipe_json(ident), "has_ground_truth": True,
    }


# --------------------------------------------------------------------------------------------- manifest
def manifest_schema():
    import pyarrow as pa

    f32 = pa.list_(pa.float32())
    cols = [
        ("clip_id", pa.string()), ("path", pa.string()), ("identity", pa.string()), ("identity_source", pa.string()),
        ("scene", pa.int64()), ("scene_key", pa.string()), ("split", pa.string()), ("voice", pa.string()),
        ("pitch", pa.int64()), ("speed", pa.int64()), ("language", pa.string()), ("text", pa.string()),
        ("phonemes", pa.string()), ("fps", pa.int64()), ("width", pa.int64()), ("height", pa.int64()),
        ("n_frames", pa.int64()), ("duration", pa.float64()), ("sample_rate", pa.int64()),
        ("face_box", pa.list_(f32)), ("landmarks", pa.list_(f32)), ("head_pose", pa.list_(f32)),
        ("head_shift", pa.list_(f32)), ("mouth_open", f32), ("mouth_width", f32), ("blink", f32), ("brow", f32),
        ("audio_energy", f32), ("motion_style", pa.string()), ("distractor", pa.string()),
        ("av_offset_frames", pa.int64()), ("flags", pa.string()), ("identity_recipe", pa.string()),
        ("has_ground_truth", pa.bool_()),  # False for ingested real footage (empty per-frame truth)
    ]
    return pa.schema(cols)


def write_manifest(rows: list[dict], path: Path) -> None:
    """Rows sorted by clip_id, fixed schema, no pandas metadata: the same rows give the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..media import atomic_path

    rows = sorted(rows, key=lambda r: r["clip_id"])
    schema = manifest_schema()
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=True, write_statistics=False)


def read_manifest(corpus_dir: str | Path):
    """The manifest as a pandas DataFrame (one row per clip)."""
    import pandas as pd

    from ..errors import InputError

    p = Path(corpus_dir) / MANIFEST
    if not p.exists():
        raise InputError(p, "corpus manifest not found (run `avatarv synth --out DIR` or `avatarv ingest`)")
    return pd.read_parquet(p)


# --------------------------------------------------------------------------------------------- entry point
@contextlib.contextmanager
def _worker_env():
    """Start worker processes single-threaded and with glibc's malloc perturbation on.

    Why: libx264 (inside PyAV) reads some heap memory it never wrote, so in a long-lived process the same frames
    encode to different bytes depending on what the heap held before (measured: 2-8 of 14 repeated encodes
    differed). With `glibc.malloc.perturb` every fresh allocation is filled with one fixed byte, which makes
    those reads — and so the mp4 bytes — independent of the process history.
    """
    tun = "glibc.malloc.perturb=165"
    prev = os.environ.get("GLIBC_TUNABLES")
    env = {"GLIBC_TUNABLES": f"{prev}:{tun}" if prev and tun not in prev else (prev or tun),
           # one thread per worker: the pool already fills the cores, and BLAS threads would only contend
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def synthesize_corpus(out_dir: str | Path, spec: CorpusSpec, workers: int = 2, progress: bool = True) -> dict:
    """Generate the whole corpus into `out_dir` (created; stale clips of an earlier run are removed).

    Returns a small summary (counts, seconds) for logs and the stage metrics.
    """
    from tqdm.auto import tqdm

    t0 = time.time()
    out = Path(out_dir)
    jobs = plan(spec)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    wanted = {f"{j.clip_id}.mp4" for j in jobs}
    for old in (out / "clips").glob("*.mp4"):
        if old.name not in wanted:
            old.unlink()
    identities = build_identities(spec.identities, spec.seed, list(spec.languages))
    # longest jobs first (distractors that render twice), so the pool does not end on one straggler
    heavy = {"two_faces": 0, "scene_cut": 1}
    order = sorted(jobs, key=lambda j: (heavy.get(j.distractor, 2), j.clip_id))
    rows: list[dict] = []
    workers = max(1, min(int(workers), len(jobs)))
    bar = tqdm(total=len(jobs), desc="synth", unit="clip", disable=not progress)
    ctx = mp.get_context("spawn")  # fresh interpreters: mediapipe/absl threads in the parent make fork unsafe
    with _worker_env(), ctx.Pool(workers, initializer=_init_worker, initargs=(identities, spec, str(out))) as pool:
        for row in pool.imap_unordered(_run_job, order, chunksize=1):
            rows.append(row)
            bar.update()
    bar.close()
    write_manifest(rows, out / MANIFEST)
    kinds = {k: sum(r["distractor"] == k for r in rows) for k in KINDS}
    return {"clips": len(rows), "clean": sum(not r["distractor"] for r in rows), "distractors": kinds,
            "identities": spec.identities, "seconds": round(time.time() - t0, 1), "workers": workers}
