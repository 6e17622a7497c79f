"""Two engines that map the per-clip cascade over a corpus and return identical rows.

- local: in this process (workers=1) or `workers` child interpreters each curating a shard.
- ray:   a Ray Data pipeline (probe batches in child processes → per-clip cascade), on a local Ray cluster by
         default (`ray.init(num_cpus=workers)`) or on an existing cluster when RAY_ADDRESS is set; the same code
         runs across nodes, which is how the seed's 50M-video cascade scales out.

Both call the same pure functions (`probe_batch`, `curate_clip`) and normalise rows to plain Python values, so
the tables they produce are equal.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from tqdm.auto import tqdm

from ..config import CurateConfig
from .cascade import curate_clip
from .probe import probe_batch

ENGINES = ("local", "ray")
PROBE_BATCH = 16


def _plain(row: dict) -> dict:
    """Plain Python values (lists, floats, str, bool), whatever container the engine handed back."""
    out = {}
    for k, raw in row.items():
        v = raw.tolist() if hasattr(raw, "tolist") else raw
        if isinstance(v, float) and math.isnan(v):
            v = math.nan
        out[k] = v
    return out


def _limit_threads() -> None:
    """One compute thread per worker: the cascade's parallelism is across clips, and 2 cores are shared."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    import torch

    torch.set_num_threads(1)


def _one(job: dict, cfg: CurateConfig) -> dict:
    _limit_threads()
    row = curate_clip(job["clip_id"], job["abs_path"], job["probe"], cfg)
    row["path"] = job["path"]
    return _plain(row)


def _run_shard(jobs: list[dict], cfg: CurateConfig, on_row) -> list[dict]:
    """Curate `jobs` in a child process (`python -m avatarv.curate.worker`); if it dies, the clip it was on
    becomes a rejection row and a fresh child carries on with the rest."""
    from .cascade import crash_row

    rows: list[dict] = []
    while len(rows) < len(jobs):
        rest = jobs[len(rows):]
        proc = subprocess.Popen([sys.executable, "-m", "avatarv.curate.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        proc.stdin.write(json.dumps({"cfg": asdict(cfg), "jobs": rest}))
        proc.stdin.close()
        for line in proc.stdout:
            if line.startswith("{"):
                rows.append(json.loads(line))
                on_row()
        code = proc.wait()
        if len(rows) < len(jobs):
            job = jobs[len(rows)]
            rows.append(crash_row(job["clip_id"], job["path"], f"worker process died (exit code {code})"))
            on_row()
    return rows


def worker_main() -> int:
    """Child side of `_run_shard`: read {cfg, jobs} as JSON on stdin, print one JSON row per clip."""
    spec = json.loads(sys.stdin.read())
    cfg = CurateConfig(**spec["cfg"])
    for job in spec["jobs"]:
        print(json.dumps(_one(job, cfg)), flush=True)
    return 0


def run_local(jobs: list[dict], cfg: CurateConfig, workers: int = 1) -> list[dict]:
    probes = probe_batch([j["abs_path"] for j in jobs])
    jobs = [{**j, "probe": p} for j, p in zip(jobs, probes)]
    if workers <= 1 or len(jobs) <= 1:
        return [_one(j, cfg) for j in tqdm(jobs, desc="curate (local)", unit="clip")]
    # Shards run in child interpreters (not multiprocessing): no __main__ re-import trap, and a native crash
    # costs one clip, not the batch.
    shards = [jobs[w::workers] for w in range(workers)]
    bar = tqdm(total=len(jobs), desc=f"curate (local x{workers})", unit="clip")
    lock = threading.Lock()

    def tick():
        with lock:
            bar.update(1)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda shard: _run_shard(shard, cfg, tick), shards))
    bar.close()
    by_id = {r["clip_id"]: r for shard in results for r in shard}
    return [by_id[j["clip_id"]] for j in jobs]


def _probe_rows(batch: dict) -> dict:
    """Ray Data batch step: one crash-proof probe child per batch of files."""
    probes = probe_batch(list(batch["abs_path"]))
    return {**batch, "probe_json": [json.dumps(p) for p in probes]}


def run_ray(jobs: list[dict], cfg: CurateConfig, workers: int = 2) -> list[dict]:
    import ray

    started = False
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.from_items([{"clip_id": j["clip_id"], "path": j["path"], "abs_path": j["abs_path"]} for j in jobs])
        ds = ds.map_batches(_probe_rows, batch_size=PROBE_BATCH, batch_format="numpy")
        cfg_dict = asdict(cfg)

        def curate_row(r: dict) -> dict:
            job = {"clip_id": r["clip_id"], "path": r["path"], "abs_path": r["abs_path"], "probe": json.loads(r["probe_json"])}
            out = _one(job, CurateConfig(**cfg_dict))
            # Ray Data stores rows as Arrow: keep every column a scalar or a string so schemas always agree.
            return {"row_json": json.dumps(out)}

        rows = [json.loads(r["row_json"]) for r in ds.map(curate_row, num_cpus=1).take_all()]
    finally:
        if started:
            ray.shutdown()
    order = {j["clip_id"]: i for i, j in enumerate(jobs)}
    return sorted(rows, key=lambda r: order[r["clip_id"]])


def run_engine(engine: str, jobs: list[dict], cfg: CurateConfig, workers: int | None = None) -> list[dict]:
    if engine not in ENGINES:
        raise ValueError(f"unknown curate engine {engine!r} (known: {', '.join(ENGINES)})")
    workers = cfg.workers if workers is None else workers
    return run_local(jobs, cfg, workers) if engine == "local" else run_ray(jobs, cfg, workers)
