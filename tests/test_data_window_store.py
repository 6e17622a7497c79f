"""The streamed window cache (data/window_store.py) gives the in-memory cache's windows and batches exactly, from
memory-mapped files, and its DataLoader serves the loop the same micro-batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _train_corpus import make_corpus, tiny_vae

from avatarv.data.datasets import PairBatches, WindowBatches, build_windows, load_pairs, load_training_clips, pair_batch
from avatarv.data.loader import LoaderSource
from avatarv.data.window_store import ARRAYS, build_window_store, open_window_store, stream_windows


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"), identities=3, scenes=2, frames=17)
    clips, vae = load_training_clips(corpus), tiny_vae()
    kw = dict(size=32, frames=9, stride=4, image_sizes=(16,))
    mem = build_windows(clips, vae, **kw, cache_dir=None, batch=4, progress=False)
    root = build_window_store(clips, vae, tmp_path_factory.mktemp("store") / "w.store", **kw, batch=4, progress=False)
    return mem, open_window_store(root), corpus, root


def test_streamed_windows_equal_the_in_memory_ones(both):
    mem, disk, _, root = both
    assert len(disk) == len(mem) == 18
    for name in ARRAYS:
        assert torch.equal(getattr(disk, name), getattr(mem, name)), name
    assert torch.equal(disk.image_latents[16], mem.image_latents[16])
    assert disk.meta.equals(mem.meta) and disk.identities == mem.identities
    mapped = Path("/proc/self/maps").read_text()
    assert all(str(root / f"{n}.bin") in mapped for n in ("latents", "frames"))  # read from disk


def test_streamed_batches_equal_and_the_loader_replays_them(both):
    mem, disk, _, _ = both
    wb_mem, wb_disk = (WindowBatches(w, w.indices("train"), 4, seed=3, latent_frames=2) for w in (mem, disk))
    loader = LoaderSource(wb_disk, 0, 1, start=2, workers=2)
    for i in (2, 3, 4, 7):  # 7: out of order, answered directly
        a, b = wb_mem.batch(i, 0, 1), loader.batch(i, 0, 1)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k])), i
    assert loader.batch(8, 0, 1)["captions"] == wb_mem.batch(8, 0, 1)["captions"]
    loader.close()
    pairs = load_pairs(None, mem)
    items = PairBatches(mem, pairs, 4, seed=0).items
    a, b = (pair_batch(w, items[:3, 0], items[:3, 1], context_frames=12) for w in (mem, disk))
    assert all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))


def test_stream_windows_builds_once_under_the_cache(both, tmp_path):
    clips, vae = load_training_clips(both[2]).head(2), tiny_vae()
    a = stream_windows(clips, vae, size=32, frames=9, cache_dir=tmp_path / "cache", progress=False)
    stores = list((tmp_path / "cache").glob("windows_*.store"))
    b = stream_windows(clips, vae, size=32, frames=9, cache_dir=tmp_path / "cache", progress=False)
    assert len(stores) == 1 and torch.equal(a.latents, b.latents) and len(a) == 2 * (17 // 9)
