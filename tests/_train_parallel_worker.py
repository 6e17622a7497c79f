"""Run by torchrun (2 gloo processes) from tests/test_train_parallel.py: train the toy model with the shared loop
under configs/accelerate/<mode>.yaml and save the gathered final weights (rank 0)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)

from _train_toy import ToyNet, ToySource, toy_cfg  # noqa: E402

from avatarv.parallel.accelerate_setup import accelerator_from_config  # noqa: E402
from avatarv.paths import ROOT  # noqa: E402
from avatarv.train.loop import train_loop  # noqa: E402


def exact_loss(model, batch, gen, step):  # no per-rank randomness: DDP must equal one process on the global batch
    loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
    return loss, {}


def build():
    torch.manual_seed(0)
    m = ToyNet()
    m.drop.p = 0.0
    return m


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    accel = accelerator_from_config(ROOT / "configs" / "accelerate" / f"{mode}.yaml", cpu=True)
    res = train_loop(build(), exact_loss, ToySource(), toy_cfg(steps=6, grad_accum=1, checkpoint_every=3), out / "run",
                     seed=3, accelerator=accel, use_muon=mode != "fsdp", use_ema=mode != "fsdp", progress=False)
    sd = accel.get_state_dict(res.wrapped)
    if accel.is_main_process:
        torch.save({"world": accel.num_processes, "state": {k: v.detach().cpu() for k, v in sd.items()},
                    "history": res.state.history}, out / "result.pt")
