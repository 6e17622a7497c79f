"""MLflow helpers: one run per pipeline stage, nested under one parent run per `dvc repro`.

Default store is `sqlite:///<root>/mlflow.db` with artifacts under `<root>/mlruns/` (both git-ignored).
`make repro` opens the parent run (`python -m avatarv.tracking begin`) and exports its id in
AVATARV_PARENT_RUN_ID; each notebook calls `start_stage`, logs, then `end_stage`; after papermill finishes the
DVC command calls `python -m avatarv.tracking notebook STAGE PATH` to attach the executed notebook.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from .config import Config, to_flat_dict
from .paths import MLFLOW_DB, MLRUNS

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
PARENT_ENV = "AVATARV_PARENT_RUN_ID"


def _mlflow(cfg: Config | None = None):
    import mlflow

    uri = (cfg.tracking.tracking_uri if cfg else "") or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{MLFLOW_DB}"
    mlflow.set_tracking_uri(uri)
    name = cfg.tracking.experiment if cfg else "avatarv"
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=MLRUNS.as_uri())
    mlflow.set_experiment(name)
    return mlflow


def start_stage(stage: str, cfg: Config, extra_params: dict[str, Any] | None = None):
    """Open the stage's run (nested under the repro's parent when there is one) and log its params."""
    mlflow = _mlflow(cfg)
    while mlflow.active_run():
        mlflow.end_run()
    parent = os.environ.get(PARENT_ENV)
    tags = {"stage": stage, "profile": cfg.profile}
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = mlflow.start_run(run_name=stage, tags=tags)
    params = {k: v for k, v in to_flat_dict(cfg).items() if k.split(".")[0] in ("profile", "seed", *_sections(stage))}
    params.update(extra_params or {})
    for i in range(0, len(params), 100):
        mlflow.log_params({k: str(v)[:500] for k, v in list(params.items())[i : i + 100]})
    return run


def _sections(stage: str) -> tuple[str, ...]:
    for key, sections in {
        "corpus": ("corpus",), "curate": ("curate",), "vae": ("vae",), "t2v": ("dit", "sampling", "train"),
        "a2v": ("dit", "sampling", "train"), "sft": ("dit", "sampling", "conditions", "train"),
        "personality": ("dit", "sampling", "conditions", "train"), "eval": ("eval",),
        "leaderboard": ("eval",), "study": ("study",), "refiner": ("refiner",), "voice": ("voice",),
    }.items():
        if key in stage:
            return sections
    return ()


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not math.isnan(v)}
    if clean and mlflow.active_run():
        mlflow.log_metrics(clean, step=step)


def log_artifact(path: str | Path, subdir: str | None = None) -> None:
    import mlflow

    if mlflow.active_run() and Path(path).exists():
        mlflow.log_artifact(str(path), artifact_path=subdir)


def end_stage(metrics_path: str | Path | None = None, artifacts: list[str | Path] = ()) -> None:
    """Log the stage's metrics JSON (flattened numbers) and artifacts, then close the run."""
    import mlflow

    if metrics_path and Path(metrics_path).exists():
        data = json.loads(Path(metrics_path).read_text())
        log_metrics({k: v for k, v in _flatten(data).items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        log_artifact(metrics_path)
    for a in artifacts:
        log_artifact(a, "plots")
    if mlflow.active_run():
        mlflow.end_run()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def begin_repro() -> str:
    """Open the parent run of one `dvc repro` and return its id (printed by the CLI for the Makefile)."""
    mlflow = _mlflow()
    run = mlflow.start_run(run_name="dvc-repro", tags={"kind": "repro"})
    mlflow.end_run(status="RUNNING")
    return run.info.run_id


def finish_repro(run_id: str, ok: bool) -> None:
    mlflow = _mlflow()
    mlflow.MlflowClient().set_terminated(run_id, status="FINISHED" if ok else "FAILED")


def attach_notebook(stage: str, notebook: str | Path) -> None:
    """Attach the executed notebook to the newest run of `stage` (called after papermill succeeds)."""
    mlflow = _mlflow()
    runs = mlflow.search_runs(filter_string=f"tags.stage = '{stage}'", order_by=["start_time DESC"], max_results=1)
    if len(runs) == 0:
        print(f"tracking: no MLflow run for stage {stage}; notebook not attached", file=sys.stderr)
        return
    mlflow.MlflowClient().log_artifact(runs.iloc[0].run_id, str(notebook), artifact_path="notebook")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m avatarv.tracking")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("begin")
    f = sub.add_parser("finish")
    f.add_argument("run_id")
    f.add_argument("--failed", action="store_true")
    n = sub.add_parser("notebook")
    n.add_argument("stage")
    n.add_argument("path")
    a = ap.parse_args(argv)
    if a.cmd == "begin":
        print(begin_repro())
    elif a.cmd == "finish":
        if a.run_id:
            finish_repro(a.run_id, not a.failed)
    else:
        attach_notebook(a.stage, a.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
