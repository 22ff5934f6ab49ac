"""Model plumbing: find the LM head, capture its input, build attention inputs, run the forward pass.

The chunked log-probs need the hidden states that enter the LM head, not the logits. :class:`HeadInputCapture` is a
forward pre-hook on the head: while active, it keeps the head's input (the exact tensor the head would see, so any
scaling the model applies before the head is included) and hands the head a single position per row instead, so the
head's own ``(R, L, V)`` matmul is never run. The model is still called through its top-level ``forward`` (and
through whatever DDP/FSDP wrapper holds it), so hooks, checkpointing and MoE aux losses behave as usual.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

from .chunked import LMHead, chunked_token_logps
from .layouts import block_mask
from .loading import text_config
from .logprobs import token_logps_from_logits
from .path_attention import PATH_ATTENTION, path_attention_inputs

logger = logging.getLogger("cpo")


class HeadInputCapture:
    """Forward pre-hook on the LM head: records its input, and the weight and bias this forward uses, and shrinks the
    input to one position while active."""

    def __init__(self, head: nn.Module):
        self.hidden: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.active = False
        self._handle = head.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if not self.active:
            return None
        self.hidden, self.weight, self.bias = args[0], module.weight, module.bias
        return (args[0][..., :1, :], *args[1:])

    def head_used(self, head: LMHead) -> LMHead:
        """``head`` with the parameters the forward just used: FSDP2 swaps unsharded ones in for the forward and
        keeps the root module's until its backward, so these are the full tensors autograd must reach."""
        if hasattr(self.weight, "full_tensor"):
            raise RuntimeError("The LM head's weight is still sharded when the head runs: FSDP wraps the head as its "
                               "own unit. Leave the LM head to the root module (fsdp_auto_wrap_policy: "
                               "TRANSFORMER_BASED_WRAP), or set chunked_logits=False.")
        return replace(head, weight=self.weight, bias=self.bias)

    def __enter__(self):
        self.active, self.hidden = True, None
        return self

    def __exit__(self, *exc):
        self.active = False

    def remove(self) -> None:
        self._handle.remove()


def lm_head_of(model: nn.Module) -> tuple[LMHead | None, nn.Module | None, str]:
    """The model's LM head as an :class:`LMHead`, its module, and why not when the chunked log-probs cannot use it."""
    module = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if module is None:
        return None, None, "the model exposes no output embeddings (get_output_embeddings() is None)"
    if type(module) is not nn.Linear:
        kind = type(module).__name__
        why = "a PEFT adapter or wrapper" if "lora" in type(module).__module__ or "peft" in type(module).__module__ else kind
        return None, module, f"the LM head is {why}, not a plain nn.Linear"
    config = text_config(model)
    scale = float(getattr(config, "logit_scale", None) or 1.0)
    if getattr(config, "logits_scaling", None):
        scale /= float(config.logits_scaling)
    softcap = getattr(config, "final_logit_softcapping", None)
    return LMHead(module.weight, module.bias, scale, float(softcap) if softcap else None), module, ""


def model_inputs(batch: dict[str, torch.Tensor], attn_impl: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The keyword arguments of ``model(...)`` for a collated batch, with the attention in the format the attention
    implementation takes: a path layout for :data:`PATH_ATTENTION`, a bool mask for sdpa/flex, an additive float
    mask for eager, none for varlen flash kernels."""
    inputs = {"input_ids": batch["input_ids"], "use_cache": False}
    if "decoder_input_ids" in batch:
        inputs.update(attention_mask=batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"])
    elif "attention_mask" in batch:
        inputs["attention_mask"] = batch["attention_mask"]
    else:
        inputs["position_ids"] = batch["position_ids"]
        if attn_impl == PATH_ATTENTION:
            inputs.update(path_attention_inputs(batch))
        elif not attn_impl.startswith("flash"):  # FlashAttention packs through position_ids (varlen) by itself
            mask = block_mask(batch["unit_ids"], batch["branch_ids"])
            if attn_impl == "eager":
                mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
                    ~mask, torch.finfo(dtype).min
                )
            inputs["attention_mask"] = mask
    return inputs


@dataclass
class ForwardOutput:
    """Per scored token: ``token_logps`` (N,) fp32 with grad, ``token_logit_means`` (N,) fp32 detached;
    ``aux_loss`` is the MoE router loss (or None)."""

    token_logps: torch.Tensor
    token_logit_means: torch.Tensor
    aux_loss: torch.Tensor | None


def forward_logps(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    *,
    attn_impl: str,
    dtype: torch.dtype,
    capture: HeadInputCapture | None = None,
    head: LMHead | None = None,
    chunk_size: int | None = None,
    router_logits: bool = False,
) -> ForwardOutput:
    """Run the model on a collated batch and return the scored tokens' log-probs.

    With ``capture`` and ``head`` (chunked log-probs), the head is applied only at scored positions, chunk by chunk.
    Without them (the naive reference), the model computes its full ``(R, L, V)`` logits, as TRL does.
    """
    inputs = model_inputs(batch, attn_impl, dtype)
    if router_logits:
        inputs["output_router_logits"] = True
    positions, target_ids = batch["target_positions"], batch["target_ids"]
    if capture is not None and head is not None:
        with capture:
            out = model(**inputs)
        hidden, used = capture.hidden, capture.head_used(head)
        capture.hidden = capture.weight = capture.bias = None
        hidden = hidden.reshape(-1, hidden.shape[-1])[positions]  # (N, H): completion positions only
        logps, means = chunked_token_logps(hidden, used, target_ids, chunk_size)
    else:
        out = model(**inputs)
        logits = out.logits
        logps, means = token_logps_from_logits(logits.reshape(-1, logits.shape[-1])[positions], target_ids)
    return ForwardOutput(logps, means, getattr(out, "aux_loss", None) if router_logits else None)


def disable_dropout(model: nn.Module) -> None:
    """Zero every dropout: ``nn.Dropout`` modules and the float ``attention_dropout`` attributes of attention
    layers (which transformers applies functionally, not through a module)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
