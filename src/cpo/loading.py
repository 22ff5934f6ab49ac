"""Load a model and its tokenizer, and read what a loaded model is configured with.

The library's loaders: a hub name, a local folder or a ``.gguf`` file. :mod:`cpo.cli.loading` checks what a user
gave before these run, and turns their errors into one line that says what to do.
"""

from __future__ import annotations

import torch
from torch import nn


def text_config(model: nn.Module):
    """The config of the language model: a multimodal model's text config, or the model's own."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def attention_implementation(model: nn.Module) -> str:
    """The attention implementation the model runs now (``"eager"`` where its config names none)."""
    return str(getattr(text_config(model), "_attn_implementation", None) or "eager")


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
