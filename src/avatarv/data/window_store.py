"""The training window cache on disk, streamed (issue 18: the `small` and `paper` profiles do not fit in memory).

`build_window_store` cuts and encodes clips exactly as datasets.build_windows does (the same windows, encoded in
the same batches, so the latents are bit-identical) but appends each encoded batch to one raw file per array
instead of stacking every window in memory; `open_window_store` maps those files back as a WindowSet whose
tensors are memory-mapped, so a batch reads only its own rows from disk; data/loader.py feeds the training loop from it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import InputError
from ..paths import RUNS
from .datasets import WindowSet, _fingerprint, encode_windows, iter_windows

ARRAYS = ("latents", "frames", "motion", "mel", "face_box", "mouth_box", "identity")
_DTYPES = {"latents": np.float32, "frames": np.uint8, "motion": np.float32, "mel": np.float32, "face_box": np.float32,
           "mouth_box": np.float32, "identity": np.int64}


class _Arrays:
    """Append-only raw files (one per array) plus the row shape and dtype of each, written to index.json."""

    def __init__(self, root: Path):
        self.root, self.files, self.shapes, self.rows = root, {}, {}, {}

    def append(self, name: str, x: np.ndarray, dtype) -> None:
        x = np.ascontiguousarray(x, dtype=dtype)
        if name not in self.files:
            self.files[name] = open(self.root / f"{name}.bin", "wb")  # noqa: SIM115 - closed in close()
            self.shapes[name], self.rows[name] = [list(x.shape[1:]), np.dtype(dtype).str], 0
        self.files[name].write(x.tobytes())
        self.rows[name] += len(x)

    def close(self) -> dict:
        for f in self.files.values():
            f.close()
        return {n: {"rows": self.rows[n], "shape": s, "dtype": d} for n, (s, d) in self.shapes.items()}


@torch.no_grad()
def build_window_store(clips: pd.DataFrame, vae, out_dir: str | Path, *, size: int = 64, frames: int = 9,
                       stride: int | None = None, image_sizes: tuple[int, ...] = (), batch: int = 16,
                       progress: bool = True) -> Path:
    """Write the windows of `clips` to `out_dir` (built in a temporary folder, renamed when complete). Memory holds
    at most one clip's windows plus one encoding batch."""
    out_dir, stride = Path(out_dir), stride or frames
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    identities = sorted(clips["identity"].unique())
    arrays, rows, pending = _Arrays(tmp), [], []

    def flush(items: list[dict]) -> None:
        lat, img = encode_windows(vae, torch.from_numpy(np.stack([w["frames"] for w in items])), image_sizes)
        arrays.append("latents", lat.numpy(), np.float32)
        for s in image_sizes:
            arrays.append(f"image_latents_{s}", img[s].numpy(), np.float32)
        for name in ("frames", "motion", "mel", "face_box", "mouth_box"):
            arrays.append(name, np.stack([w[name] for w in items]), _DTYPES[name])
        arrays.append("identity", np.array([identities.index(w["meta"]["identity"]) for w in items]), np.int64)
        rows.extend(w["meta"] for w in items)

    for w in iter_windows(clips, size=size, frames=frames, stride=stride, progress=progress):
        pending.append(w)
        if len(pending) == batch:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    index = arrays.close()
    if not rows:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(Path(str(clips["abs_path"].iloc[0]) if len(clips) else "."), f"no clip has {frames} frames")
    pd.DataFrame(rows).to_parquet(tmp / "meta.parquet")
    (tmp / "index.json").write_text(json.dumps({"arrays": index, "identities": identities,
                                                "image_sizes": [int(s) for s in image_sizes]}, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def _mapped(root: Path, name: str, spec: dict) -> torch.Tensor:
    shape = (spec["rows"], *spec["shape"])
    if spec["rows"] == 0:
        return torch.from_numpy(np.zeros(shape, np.dtype(spec["dtype"])))
    # copy-on-write map: pages are read from disk when a batch touches them, and nothing writes back
    return torch.from_numpy(np.memmap(root / f"{name}.bin", dtype=np.dtype(spec["dtype"]), mode="c", shape=shape))


def open_window_store(path: str | Path) -> WindowSet:
    """The WindowSet of a store, its arrays memory-mapped (meta, identities and boxes are small)."""
    root = Path(path)
    if not (root / "index.json").exists():
        raise InputError(root, "not a window store (no index.json)")
    idx = json.loads((root / "index.json").read_text())
    a = idx["arrays"]
    return WindowSet(**{n: _mapped(root, n, a[n]) for n in ARRAYS}, meta=pd.read_parquet(root / "meta.parquet"),
                     identities=list(idx["identities"]),
                     image_latents={int(s): _mapped(root, f"image_latents_{s}", a[f"image_latents_{s}"])
                                    for s in idx["image_sizes"]})


def stream_windows(clips: pd.DataFrame, vae, *, size: int, frames: int, stride: int | None = None,
                   image_sizes: tuple[int, ...] = (), cache_dir: str | Path = RUNS / "cache",
                   progress: bool = True) -> WindowSet:
    """datasets.build_windows, streamed: the store under `cache_dir` keyed like the in-memory cache, built once."""
    stride = stride or frames
    key = _fingerprint(vae, clips, size, frames, stride, image_sizes)
    root = Path(cache_dir) / f"windows_s{size}_f{frames}_{key}.store"
    if not (root / "index.json").exists():
        build_window_store(clips, vae, root, size=size, frames=frames, stride=stride, image_sizes=image_sizes,
                           progress=progress)
    return open_window_store(root)
