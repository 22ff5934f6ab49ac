"""Model plumbing: load a model and tokenizer, find the LM head, capture its input, build attention inputs, run the
forward pass.

The chunked path needs the hidden states that enter the LM head, not the logits. :class:`HeadInputCapture` is a
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

from .blockattn import AttentionPath, attention_paths, block_attention
from .chunked import LMHead, chunked_token_logps
from .layouts import block_mask, block_regions
from .logprobs import token_logps_from_logits

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


def text_config(model: nn.Module):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def lm_head_of(model: nn.Module) -> tuple[LMHead | None, nn.Module | None, str]:
    """The model's LM head as an :class:`LMHead`, its module, and why not when it cannot be used by the chunked path."""
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


def attention_implementation(model: nn.Module) -> str:
    return str(getattr(text_config(model), "_attn_implementation", None) or "eager")


PATH_ATTENTION = "cpo_paths_sdpa"


@dataclass
class PathLayout:
    """What :func:`path_attention` needs of a packed or shared batch: its causal paths, and the ids a dense mask is
    built from where a layer needs one (a sliding window)."""

    paths: list[AttentionPath]
    unit_ids: torch.Tensor
    branch_ids: torch.Tensor
    position_ids: torch.Tensor

    def dense_mask(self, sliding_window: int | None) -> torch.Tensor:
        mask = block_mask(self.unit_ids, self.branch_ids)
        if sliding_window:  # as transformers' window over the padded layout: positions less than the window apart
            pos = self.position_ids
            mask = mask & ((pos[:, :, None] - pos[:, None, :]) < sliding_window)[:, None]
        return mask


def path_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers attention function of :data:`PATH_ATTENTION`: a batch with a ``cpo_path_layout`` runs
    :func:`cpo.blockattn.block_attention` (fused causal sdpa per path, no ``(L, L)`` mask); a layer with a sliding
    window runs sdpa with the layout's dense mask; any other call is sdpa exactly as the model had it."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout: PathLayout | None = kwargs.pop("cpo_path_layout", None)
    if layout is not None:
        window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
        if window or kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None or kwargs.get("s_aux") is not None:
            attention_mask = layout.dense_mask(window)
        else:
            scale = scaling if scaling is not None else query.shape[-1] ** -0.5
            out = block_attention(query, key, value, layout.paths, scale, dropout if module.training else 0.0)
            return out.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def use_path_attention(model: nn.Module) -> str:
    """Switch an sdpa model to :data:`PATH_ATTENTION` (registered with transformers on first use) and return the
    attention implementation it now has. Calls without a cpo layout still run sdpa with the masks sdpa gets, and
    ``save_pretrained`` writes no attention implementation, so the model is unchanged outside cpo's batches."""
    config = text_config(model)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return attention_implementation(model)
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(PATH_ATTENTION, path_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PATH_ATTENTION, sdpa_mask)
    config._attn_implementation = PATH_ATTENTION
    return PATH_ATTENTION


def restore_sdpa(model: nn.Module) -> str:
    """Undo :func:`use_path_attention` (when no packed or shared layout is used after all)."""
    config = text_config(model)
    if getattr(config, "_attn_implementation", None) == PATH_ATTENTION:
        config._attn_implementation = "sdpa"
    return attention_implementation(model)


def model_inputs(batch: dict[str, torch.Tensor], attn_impl: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The keyword arguments of ``model(...)`` for a collated batch, with the attention in the format the attention
    implementation takes: paths for :data:`PATH_ATTENTION`, a bool mask for sdpa/flex, an additive float mask for
    eager, none for varlen flash kernels."""
    inputs = {"input_ids": batch["input_ids"], "use_cache": False}
    if "decoder_input_ids" in batch:
        inputs.update(attention_mask=batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"])
    elif "attention_mask" in batch:
        inputs["attention_mask"] = batch["attention_mask"]
    else:
        inputs["position_ids"] = batch["position_ids"]
        if attn_impl == PATH_ATTENTION:
            unit_ids, branch_ids = batch["unit_ids"], batch["branch_ids"]
            paths = attention_paths(block_regions(unit_ids.cpu(), branch_ids.cpu()))
            inputs["cpo_path_layout"] = PathLayout(paths, unit_ids, branch_ids, batch["position_ids"])
            # an empty 4D mask: transformers passes a 4D mask through untouched, so it builds no (L, L) mask
            inputs["attention_mask"] = torch.ones((unit_ids.shape[0], 1, 0, 0), dtype=torch.bool,
                                                  device=unit_ids.device)
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

    With ``capture`` and ``head`` (the chunked path), the head is applied only at scored positions, chunk by chunk.
    Without them (the naive reference path), the model computes its full ``(R, L, V)`` logits, as TRL does.
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


def load_model(name_or_path: str, init_kwargs: dict | None = None, trust_remote_code: bool = False) -> nn.Module:
    """Load a model from a hub name, a local folder or a ``.gguf`` file (dequantised into a plain trainable model).

    Encoder-decoder configs load as ``AutoModelForSeq2SeqLM``, everything else as ``AutoModelForCausalLM``.
    ``init_kwargs`` go to ``from_pretrained`` (``revision`` also to the config); a ``.gguf`` file honours only those
    :func:`cpo.gguf.gguf_load_options` lists, and refuses the others with a ``ValueError`` naming them.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    kwargs = dict(init_kwargs or {})
    kwargs.setdefault("trust_remote_code", trust_remote_code)
    dtype = kwargs.get("dtype", kwargs.pop("torch_dtype", None))
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"model_init_kwargs dtype={dtype!r} is not a torch dtype; use e.g. 'float32', 'bfloat16'.")
        kwargs["dtype"] = getattr(torch, dtype)
    if str(name_or_path).endswith(".gguf"):
        from .gguf import gguf_load_options, load_gguf_model

        return load_gguf_model(name_or_path, **gguf_load_options(kwargs))
    config_kwargs = {k: kwargs[k] for k in ("trust_remote_code", "revision") if k in kwargs}
    config = AutoConfig.from_pretrained(name_or_path, **config_kwargs)
    auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    return auto.from_pretrained(name_or_path, **kwargs)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None):
    """The tokenizer of a hub model (at ``revision``, default ``main``), a local folder or a ``.gguf`` file (whose
    BOS, EOS and pad are set from its chat template, see :func:`cpo.gguf.load_gguf_tokenizer`)."""
    if str(name_or_path).endswith(".gguf"):
        from .gguf import load_gguf_tokenizer

        return load_gguf_tokenizer(name_or_path)
    from transformers import AutoTokenizer

    extra = {"revision": revision} if revision is not None else {}
    return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **extra)
