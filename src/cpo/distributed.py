"""How the trainer runs across processes: FSDP2 on CPU processes, and which routes sharding allows.

accelerate 1.15 turns FSDP on only for GPU-like devices: on a CPU-only machine an FSDP launch silently becomes DDP.
PyTorch's FSDP2 (``fully_shard``) does run on CPU tensors over gloo, so when FSDP2 is asked for and the processes
are CPU ones, the trainer gives accelerate's state the FSDP plugin it dropped and FSDP2 runs as requested.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("cpo")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() == "true"


def fsdp_requested(args) -> bool:
    """Whether this run asked for FSDP, through the training arguments or ``accelerate launch``."""
    return args.fsdp_plugin_args is not None or _env_flag("ACCELERATE_USE_FSDP")


def enable_fsdp_on_cpu(accelerator, args) -> bool:
    """Run a requested FSDP2 on CPU processes instead of the DDP that accelerate falls back to. True if enabled."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    if not fsdp_requested(args) or state.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin(**(args.fsdp_plugin_args or {}))
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as accelerate does: later states copy it
    state.fsdp_plugin = plugin
    accelerator.get_state_dict = _full_state_dict  # accelerate's gather offloads to pinned memory, unusable on CPU
    logger.info("FSDP2 on %d CPU processes (gloo): accelerate would have run DDP here.", accelerator.num_processes)
    return True


def fsdp_version(args) -> int | None:
    """The FSDP version this run asks for (``fsdp_config`` first, then ``accelerate launch``'s), or None without FSDP.

    transformers defaults ``fsdp_config['version']`` to 2; accelerate's plugin, and so a launch config without
    ``fsdp_version``, defaults to 1.
    """
    if args.fsdp_plugin_args is not None:
        return int(args.fsdp_plugin_args.get("fsdp_version", 2))
    if _env_flag("ACCELERATE_USE_FSDP"):
        return int(os.environ.get("FSDP_VERSION", "1"))
    return None


def has_accelerator(args) -> bool:
    """Whether this process trains on a GPU-like device (CUDA, XPU, ...), as FSDP1 needs. MPS is not one for FSDP."""
    import torch

    if args.use_cpu:
        return False
    device = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return device is not None and device.type not in ("cpu", "mps")


def check_sharding_request(args) -> None:
    """Refuse FSDP1 without an accelerator, from the configuration, before accelerate is asked.

    accelerate's own refusal has changed wording between versions; FSDP2 runs on CPU processes (see
    :func:`enable_fsdp_on_cpu`), so the message points there.
    """
    if fsdp_version(args) == 1 and not has_accelerator(args):
        raise RuntimeError("FSDP1 needs a GPU-like device per process, and this machine has none. To shard on CPU "
                           "processes use FSDP2: fsdp_version: 2 in the accelerate config (as in "
                           "examples/accelerate/fsdp.yaml), or fsdp_config={'version': 2}.")


def _full_state_dict(model, unwrap: bool = True) -> dict:
    """Every process gathers each sharded tensor (a collective); all return full, independent CPU tensors."""
    full = {}
    for name, tensor in model.state_dict().items():
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        full[name] = tensor.detach().clone()
    return full


def warn_dropped_sharding(accelerator, is_fsdp: bool, is_deepspeed: bool) -> None:
    """Say when a requested FSDP or DeepSpeed run is not one."""
    for env, name, on in (("ACCELERATE_USE_FSDP", "FSDP", is_fsdp), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed", is_deepspeed)):
        if _env_flag(env) and not on:
            logger.warning(f"{name} was requested, but accelerate enables it only on GPU-like devices: this run is "
                           f"{accelerator.distributed_type.value} instead.")


def head_sharding(accelerator, is_deepspeed: bool) -> str | None:
    """The name of the sharding that keeps the LM head's full weight out of reach of chunked log-probs, or None.

    FSDP2 is not one: the head's pre-hook sees the unsharded weight the forward uses, and the root module keeps it
    unsharded until its backward. DeepSpeed ZeRO-3 gathers parameters in hooks of its own and frees them after each
    module's forward.
    """
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if is_deepspeed and plugin is not None and plugin.zero_stage == 3:
        return "DeepSpeed ZeRO-3"
    return None
