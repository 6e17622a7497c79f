"""Ulysses sequence-parallel sparse reference attention over 2 gloo processes equals one process."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from avatarv.models.reference_attention import attend


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs():
    g = torch.Generator().manual_seed(0)
    shape_g, shape_r = (2, 4, 12, 8), (2, 4, 20, 8)
    return [torch.randn(s, generator=g) for s in (shape_g, shape_g, shape_g, shape_r, shape_r)]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    from avatarv.parallel.ulysses import ulysses_reference_attention

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        q, k, v, rk, rv = (t.chunk(world, dim=2)[rank] for t in _inputs())
        out = ulysses_reference_attention(q, k, v, rk, rv)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_rank_ulysses_equals_single_process(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    got = torch.cat([torch.load(tmp_path / f"rank{r}.pt") for r in range(world)], dim=2)
    q, k, v, rk, rv = _inputs()
    want = attend(q, k, v, rk, rv)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # and the reference genuinely matters (a wrong shard order would not match this)
    assert not torch.allclose(want, attend(q, k, v))
