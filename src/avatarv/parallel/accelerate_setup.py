"""Multi-process training through accelerate configs (configs/accelerate/ddp.yaml, fsdp.yaml): seed "trained on
a huge corpus" needs data parallelism; FSDP shards weights, gradients and optimizer state when the model outgrows
one GPU.

`accelerator_from_config(path)` turns an accelerate config file into an `Accelerator` inside a process that was
started by `accelerate launch` OR by `torchrun` (which accelerate's own `--cpu --num_processes 2` fails to start
here: INSTALL-NOTES). On CPU it uses gloo. The shared loop then runs unchanged: each rank takes its slice of every
global batch (`rank::world`), DDP all-reduces gradients, and the result equals single-process training on the
global batch (tests/test_train_parallel.py checks this with 2 gloo processes).
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ..errors import ConfigError

FSDP_KEYS = {
    "fsdp_version": "fsdp_version", "fsdp_reshard_after_forward": "reshard_after_forward",
    "fsdp_state_dict_type": "state_dict_type", "fsdp_cpu_ram_efficient_loading": "cpu_ram_efficient_loading",
    "fsdp_activation_checkpointing": "activation_checkpointing",
}


def read_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: accelerate config not found")
    data = yaml.safe_load(path.read_text()) or {}
    if data.get("distributed_type") not in ("NO", "MULTI_GPU", "MULTI_CPU", "FSDP"):
        raise ConfigError(f"{path}: distributed_type {data.get('distributed_type')!r} not supported here")
    return data


def uses_fsdp(path: str | Path | None) -> bool:
    return path is not None and read_config(path).get("distributed_type") == "FSDP"


def accelerator_from_config(path: str | Path, *, cpu: bool | None = None):
    """An Accelerator configured like `accelerate launch --config_file path` would, for this process."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedDataParallelKwargs, FullyShardedDataParallelPlugin

    data = read_config(path)
    cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    kwargs: dict = {"cpu": cpu, "mixed_precision": "no" if cpu else data.get("mixed_precision", "no")}
    if data["distributed_type"] == "FSDP":
        fc = data.get("fsdp_config", {})
        plugin_kw = {v: fc[k] for k, v in FSDP_KEYS.items() if k in fc}
        if fc.get("fsdp_auto_wrap_policy") == "TRANSFORMER_BASED_WRAP":
            plugin_kw["auto_wrap_policy"] = "transformer_based_wrap"
            plugin_kw["transformer_cls_names_to_wrap"] = [fc.get("fsdp_transformer_layer_cls_to_wrap", "AvatarBlock")]
        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(**plugin_kw)
    else:
        kwargs["kwargs_handlers"] = [
            DistributedDataParallelKwargs(find_unused_parameters=bool(data.get("find_unused_parameters", True)))
        ]
    return Accelerator(**kwargs)
