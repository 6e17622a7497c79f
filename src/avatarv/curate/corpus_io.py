"""Reading a corpus folder (synthetic or ingested) and writing the curated folder atomically.

Input: DIR/manifest.parquet when present (its clip_id/path columns; the rest is ground truth used only for
scoring and the claimed identity), else every DIR/clips/*.mp4 (or DIR/**/*.mp4). Output (COMMON.md contract):
DIR2/clips.parquet, identity_graph.parquet, pairs.parquet, report.json; paths relative to the corpus dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..media import atomic_path


def list_clips(in_dir: str | Path) -> tuple[list[dict], pd.DataFrame | None]:
    """(jobs: clip_id, path relative to in_dir, abs_path; the manifest or None)."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise InputError(in_dir, "corpus folder not found")
    manifest = None
    if (in_dir / "manifest.parquet").exists():
        manifest = pd.read_parquet(in_dir / "manifest.parquet")
        pairs = list(zip(manifest["clip_id"], manifest["path"]))
    else:
        files = sorted((in_dir / "clips").glob("*.mp4")) or sorted(in_dir.rglob("*.mp4"))
        pairs = [(f.stem, str(f.relative_to(in_dir))) for f in files]
    if not pairs:
        raise InputError(in_dir, "no clips (no manifest.parquet and no .mp4 files)")
    jobs = [{"clip_id": str(c), "path": str(p), "abs_path": str((in_dir / p).resolve())} for c, p in pairs]
    return jobs, manifest


def write_outputs(out_dir: str | Path, clips: pd.DataFrame, graph: pd.DataFrame, pairs: pd.DataFrame, report: dict) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, df in (("clips", clips), ("identity_graph", graph), ("pairs", pairs)):
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            df.to_parquet(tmp, index=False)
    with atomic_path(out_dir / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True, default=float))


def read_outputs(out_dir: str | Path) -> dict:
    out_dir = Path(out_dir)
    return {"clips": pd.read_parquet(out_dir / "clips.parquet"),
            "identity_graph": pd.read_parquet(out_dir / "identity_graph.parquet"),
            "pairs": pd.read_parquet(out_dir / "pairs.parquet"),
            "report": json.loads((out_dir / "report.json").read_text())}
