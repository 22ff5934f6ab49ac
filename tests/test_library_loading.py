"""Model loading (cpo.loading): dtype names read and refused, a saved folder's model and tokenizer back, and what a
model's config says about its attention."""

from types import SimpleNamespace

import pytest
import torch
from helpers import save_tiny_model

from cpo.loading import attention_implementation, load_model, load_tokenizer, text_config


def test_a_saved_folder_loads_with_the_dtype_named_and_a_wrong_name_is_refused(tmp_path, tok):
    folder = save_tiny_model(tmp_path / "tiny", tok)
    model = load_model(str(folder), {"torch_dtype": "bfloat16"})  # TRL's old key, read as dtype
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.config.is_encoder_decoder
    assert load_tokenizer(str(folder)).get_vocab() == tok.get_vocab()
    with pytest.raises(ValueError, match="dtype='fp16x' is not a torch dtype; use e.g. 'float32'"):
        load_model(str(folder), {"dtype": "fp16x"})


def test_text_config_and_attention_implementation():
    """A config without get_text_config is its own text config; one that names no attention runs eager."""
    plain = SimpleNamespace(config=SimpleNamespace())
    assert text_config(plain) is plain.config and attention_implementation(plain) == "eager"
    inner = SimpleNamespace(_attn_implementation="sdpa")
    wrapped = SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: inner))
    assert text_config(wrapped) is inner and attention_implementation(wrapped) == "sdpa"
