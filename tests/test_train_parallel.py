"""DDP and FSDP through the accelerate configs, on CPU with 2 gloo processes started by torchrun: the shared loop
over 2 ranks (each half of every global batch) ends with the same weights as one process on the whole batch."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _train_parallel_worker import build, exact_loss
from _train_toy import ToySource, toy_cfg

from avatarv.parallel.accelerate_setup import read_config, uses_fsdp
from avatarv.paths import ROOT
from avatarv.train.loop import train_loop

WORKER = Path(__file__).parent / "_train_parallel_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(mode: str, out: Path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()), str(WORKER), mode, str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out / "result.pt")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_gloo_ranks_match_one_process(tmp_path, mode):
    got = _torchrun(mode, tmp_path)
    assert got["world"] == 2
    ref = train_loop(build(), exact_loss, ToySource(), toy_cfg(steps=6, grad_accum=1, checkpoint_every=3),
                     tmp_path / "single", seed=3, device="cpu", use_muon=mode != "fsdp", use_ema=False, progress=False)
    want = ref.model.state_dict()
    assert got["state"].keys() == want.keys()
    for k, v in want.items():
        torch.testing.assert_close(got["state"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert [h["loss"] for h in got["history"]] == pytest.approx([h["loss"] for h in ref.state.history], rel=1e-4)


def test_accelerate_configs_parse():
    assert not uses_fsdp(ROOT / "configs" / "accelerate" / "ddp.yaml")
    assert uses_fsdp(ROOT / "configs" / "accelerate" / "fsdp.yaml")
    assert read_config(ROOT / "configs" / "accelerate" / "fsdp.yaml")["fsdp_config"]["fsdp_version"] == 2
