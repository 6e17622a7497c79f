"""All project paths, anchored on the project root (the folder holding params.yaml).

Every module asks this one for locations so notebooks, the CLI, DVC stages and tests agree.
"""

from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    env = os.environ.get("AVATARV_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for p in (start, *start.parents):
            if (p / "params.yaml").exists() and (p / "dvc.yaml").exists():
                return p
    return Path(__file__).resolve().parents[2]


ROOT = _find_root()
PARAMS = ROOT / "params.yaml"
DATA = ROOT / "data"
CORPUS = DATA / "corpus"
CURATED = DATA / "curated"
RUNS = ROOT / "runs"  # checkpoints and generated media, git-ignored, DVC outputs
REPORTS = ROOT / "reports"
REPORT_NOTEBOOKS = REPORTS / "notebooks"
MLFLOW_DB = ROOT / "mlflow.db"
MLRUNS = ROOT / "mlruns"


def stage_report_dir(stage: str) -> Path:
    """reports/<stage>/ for a stage's metrics JSON and plots (created on demand)."""
    d = REPORTS / stage
    d.mkdir(parents=True, exist_ok=True)
    return d
