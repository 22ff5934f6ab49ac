"""How gradient checkpointing recomputes a layer: the choices of ``CPOConfig.gradient_checkpointing_policy``.

``gradient_checkpointing=True`` keeps meaning what it means in TRL and transformers (layers' activations are not all
kept for the backward pass); the policy only chooses what a checkpointed layer keeps:

- ``full``: nothing but its input; the backward pass runs the whole layer forward again (transformers' behaviour);
- ``selective``: the outputs of its matrix multiplications and of the fused attention kernel; the backward pass
  recomputes only the cheap element-wise ops between them (norms, rotary, activation, residual adds), so no matmul
  runs twice. PyTorch's selective activation checkpointing (``create_selective_checkpoint_contexts``), which needs
  the non-reentrant ``torch.utils.checkpoint``; every op of the layer then passes through a Python dispatch mode,
  twice, which costs time on a CPU where ops are small (path attention runs a few ops per sequence);
- ``mlp``: only the layer's MLP is checkpointed, selectively (its matmul outputs kept, the activation and the
  gate-times-up product recomputed); the attention block keeps its activations. The MLP's intermediates (gate,
  up, the activation and the product, each ``intermediate_size`` wide) are most of a layer's activations, and its
  few ops cost little to replay.

``None`` (the default) is :data:`DEFAULT_POLICY`, unless ``gradient_checkpointing_kwargs`` ask for the reentrant
checkpoint or give their own ``context_fn``: then the kwargs are followed as given (``full``). Measured in
docs/benchmarks.md.
"""

from __future__ import annotations

import logging
from functools import partial

import torch
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts
from transformers import TrainerCallback

logger = logging.getLogger("cpo")

POLICIES = ("selective", "mlp", "full")
DEFAULT_POLICY = "mlp"  # the fastest on the benchmarks of docs/benchmarks.md, memory within their bounds

_aten = torch.ops.aten
# matmuls (with or without bias, batched) and the fused sdpa kernels of each device: their outputs are kept
SAVED_OPS = frozenset(
    getattr(_aten, name) for name in (
        "mm", "addmm", "bmm", "baddbmm", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_fused_attention_overrideable",
    ) if hasattr(_aten, name)
)


def keep_matmuls(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """The selective policy: keep what :data:`SAVED_OPS` return, recompute every other op."""
    return CheckpointPolicy.MUST_SAVE if op.overloadpacket in SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def selective_contexts():
    """``context_fn`` of ``torch.utils.checkpoint.checkpoint`` for the selective policy (a fresh cache per call)."""
    return create_selective_checkpoint_contexts(keep_matmuls)


def resolve_policy(policy: str | None, checkpoint_kwargs: dict | None) -> str:
    """The policy a run uses: ``policy``, or for ``None`` :data:`DEFAULT_POLICY` unless ``checkpoint_kwargs`` (the
    ``gradient_checkpointing_kwargs``) choose the reentrant checkpoint or a ``context_fn`` of their own."""
    if policy is not None:
        return policy
    kwargs = checkpoint_kwargs or {}
    return "full" if kwargs.get("use_reentrant") or "context_fn" in kwargs else DEFAULT_POLICY


def checkpoint_mlp_only(mlp: torch.nn.Module, checkpoint_func, function, *args):
    """Run ``function`` (a decoder layer's forward) with only its ``mlp`` checkpointed, selectively: the ``mlp``
    policy's stand-in for a layer's ``_gradient_checkpointing_func``. ``checkpoint_func`` is transformers'
    (``partial(checkpoint, **gradient_checkpointing_kwargs)``)."""
    own = mlp.__dict__.get("forward")
    plain = mlp.forward
    mlp.forward = partial(checkpoint_func, plain, context_fn=selective_contexts)
    try:
        return function(*args)
    finally:
        if own is None:
            del mlp.forward
        else:
            mlp.forward = own


def apply_policy(model: torch.nn.Module, policy: str) -> int:
    """Give each checkpointed layer of ``model`` the ``policy`` (after transformers enabled checkpointing, which sets
    each layer's ``_gradient_checkpointing_func``). Returns the number of layers changed; under ``mlp`` a layer
    without an ``mlp`` module gets ``selective``."""
    if policy == "full":
        return 0
    from transformers.modeling_layers import GradientCheckpointingLayer

    changed = 0
    for module in model.modules():
        if not (isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing):
            continue
        func = module._gradient_checkpointing_func
        if isinstance(func, partial) and func.func is checkpoint_mlp_only:
            continue  # applied already
        mlp = getattr(module, "mlp", None)
        if policy == "mlp" and isinstance(mlp, torch.nn.Module):
            module._gradient_checkpointing_func = partial(checkpoint_mlp_only, mlp, func)
        else:  # transformers' func is partial(checkpoint, **kwargs): this merges into it
            module._gradient_checkpointing_func = partial(func, context_fn=selective_contexts)
        changed += 1
    return changed


class CheckpointingPolicy(TrainerCallback):
    """Applies ``args.gradient_checkpointing_policy`` when training begins, once ``Trainer.train`` has enabled
    checkpointing; nothing when ``gradient_checkpointing`` is off."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not args.gradient_checkpointing or model is None:
            return
        policy = resolve_policy(args.gradient_checkpointing_policy, args.gradient_checkpointing_kwargs)
        layers = apply_policy(model, policy)
        logger.info(f"Gradient checkpointing: {policy} policy" + (f" on {layers} layers." if layers else "."))
