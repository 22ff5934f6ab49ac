"""Load GGUF checkpoints (llama.cpp's format) as plain, trainable transformers models and tokenizers.

transformers reads a ``.gguf`` file with the ``gguf`` package and dequantises its tensors, but the model it returns is
flagged as quantised (``hf_quantizer``, ``config.quantization_config``): it refuses ``save_pretrained`` and other
trainers treat it as frozen. :func:`load_gguf_model` copies the dequantised weights into a model built from the
same config without those flags. Any architecture transformers' GGUF path supports works (llama, qwen2, mistral,
gemma, phi3, ...).

The tokenizer's special tokens come from the GGUF metadata, which can name the wrong EOS for chat models (a
``<|endoftext|>`` where the chat template ends each turn with ``<|im_end|>``): generation would then never stop.
:func:`load_gguf_tokenizer` sets BOS, EOS and pad explicitly, EOS from the chat template when there is one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path

from .extras import missing_extra
from .rows import chat_end_of_turn

logger = logging.getLogger("cpo")

def _split(path: str | Path) -> tuple[str, str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No GGUF file at {path}.")
    if importlib.util.find_spec("gguf") is None:
        raise missing_extra("gguf", "gguf", "Reading a .gguf file")
    return str(path.parent), path.name


def load_gguf_model(path: str | Path, dtype=None, attn_implementation: str | None = None):
    """Load a causal LM from a ``.gguf`` file as a plain (not quantisation-flagged) transformers model.

    Equals ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)`` tensor for tensor, but the result can be
    trained and saved with ``save_pretrained``.

    Args:
        path: the ``.gguf`` file.
        dtype: a ``torch.dtype`` for the weights; ``None`` keeps the dequantised float32.
        attn_implementation: the attention kernel (``"sdpa"``, ``"eager"``, ...); ``None``: transformers' choice.

    Returns:
        A ``PreTrainedModel`` (e.g. ``LlamaForCausalLM``) in eval mode, with ``config.quantization_config`` removed.
    """
    import torch
    from transformers import AutoModelForCausalLM

    folder, name = _split(path)
    dtype = dtype or torch.float32
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = str(Path(folder) / name)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with _skip_init():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, **extra)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.tie_weights()
    model.generation_config = quantised.generation_config
    del quantised
    return model.eval()


GGUF_OPTIONS = ("dtype", "attn_implementation")


def gguf_load_options(kwargs: dict) -> dict:
    """The ``from_pretrained`` keyword arguments that :func:`load_gguf_model` honours (``dtype``,
    ``attn_implementation``), from those a caller gives for any model.

    ``revision="main"`` and ``trust_remote_code=False`` are accepted as the no-ops they are for a local file.

    Raises:
        ValueError: an argument a ``.gguf`` file cannot honour: a Hub revision, remote code (transformers builds the
            architecture from its own code), bitsandbytes quantisation (the weights are dequantised to train), or
            any other ``from_pretrained`` argument, each named.
    """
    options = {k: v for k, v in kwargs.items() if k in GGUF_OPTIONS and v is not None}
    refused = []
    for key, value in kwargs.items():
        if key in GGUF_OPTIONS or (key, value) in (("revision", "main"), ("revision", None),
                                                    ("trust_remote_code", False)):
            continue
        why = {"revision": "a local file has no Hub revisions",
               "trust_remote_code": "transformers builds a .gguf model from its own code, never from remote code",
               "quantization_config": "the weights are dequantised to be trained; load a Hub or saved folder "
                                      "in 4/8 bit instead"}.get(key, "load_gguf_model takes only dtype and "
                                                                  "attn_implementation")
        shown = f"{key}={value!r}" if isinstance(value, (str, int, float)) else key
        refused.append(f"{shown} ({why})")
    if refused:
        raise ValueError("A .gguf model cannot honour " + "; ".join(refused) + ".")
    return options


def _skip_init():
    """No random initialisation of weights that are overwritten at once (saves seconds on a 100M model)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: pay for the init
        return contextlib.nullcontext()
    return no_init_weights()


def set_special_tokens(tokenizer) -> None:
    """Set EOS and pad explicitly: EOS is the chat template's end-of-turn token when there is one (else the
    metadata's EOS), pad is the metadata's pad token or else EOS. BOS stays the metadata's (``None`` for models
    without one). Logs a changed EOS."""
    eos = chat_end_of_turn(tokenizer) or tokenizer.eos_token
    if eos is None:
        raise ValueError("The GGUF tokenizer names no EOS token and has no chat template to find one from; "
                         "set tokenizer.eos_token yourself.")
    if eos != tokenizer.eos_token:
        logger.warning(f"GGUF metadata names EOS {tokenizer.eos_token!r}, but the chat template ends turns with "
                       f"{eos!r}: using {eos!r} as EOS so that generation stops at the end of an answer.")
    pad = tokenizer.pad_token if tokenizer.pad_token is not None else eos
    tokenizer.eos_token = eos
    tokenizer.pad_token = pad


def load_gguf_tokenizer(path: str | Path):
    """Load the tokenizer stored in a ``.gguf`` file, with BOS, EOS and pad set explicitly (see
    :func:`set_special_tokens`). For SmolLM2 (ChatML): BOS ``<|im_start|>``, EOS and pad ``<|im_end|>``."""
    from transformers import AutoTokenizer

    folder, name = _split(path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    set_special_tokens(tokenizer)
    return tokenizer


def align_special_tokens(model, tokenizer) -> None:
    """Give ``model.config`` and ``model.generation_config`` the tokenizer's BOS, EOS and pad ids, so that
    ``generate`` stops where the tokenizer says an answer ends."""
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    for target in (model.config, getattr(model, "generation_config", None)):
        if target is not None:
            for key, value in ids.items():
                setattr(target, key, value)
