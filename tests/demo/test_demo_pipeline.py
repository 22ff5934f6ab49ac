"""Demo orchestration pieces: layer freezing, the data of a budget, the shared training config, the CLI contract."""

import subprocess
import sys
from dataclasses import replace

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from cpo.demo.pipeline import FULL, QUICK, build_data, freeze_lower_layers, train_config


def tiny_llama(layers=3):
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def test_freeze_lower_layers_counts_by_hand():
    model = tiny_llama()
    # One layer: q, o 32x32; k, v 16x32 (2 kv heads of 8); gate, up 64x32; down 32x64; two norms of 32.
    per_layer = 2 * 32 * 32 + 2 * 16 * 32 + 3 * 64 * 32 + 2 * 32
    assert freeze_lower_layers(model, 2) == 2 * per_layer + 32  # + the final norm
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("model.layers.1.", "model.layers.2.", "model.norm.")) for n in trainable)
    assert not model.model.embed_tokens.weight.requires_grad and not model.lm_head.weight.requires_grad
    assert freeze_lower_layers(model, 3) == 3 * per_layer + 32
    for bad in (0, 4):
        with pytest.raises(ValueError, match="must be in 1..3"):
            freeze_lower_layers(model, bad)


def test_data_of_a_budget():
    data = build_data(QUICK)
    assert len(data.train) == QUICK.steps * QUICK.batch_size == len(data.train_pairs)
    assert len(data.eval) == QUICK.test_numbers == len(data.eval_numbers)
    assert set(data.train.column_names) == {"prompt", "chosen", "rejected"}
    assert data.train[0] == data.train_pairs[0].row()
    with pytest.raises(ValueError, match="exceeds the"):
        build_data(replace(QUICK, steps=1000))


def test_sft_and_cpo_share_everything_but_the_loss(tmp_path):
    sft = train_config(FULL, "sft", tmp_path, progress=False).to_dict()
    cpo = train_config(FULL, "sigmoid", tmp_path, progress=False).to_dict()
    assert {k for k in sft if sft[k] != cpo[k]} == {"loss_type"}
    assert (cpo["learning_rate"], cpo["max_steps"], cpo["cpo_alpha"]) == (FULL.learning_rate, FULL.steps, 1.0)


def test_cpo_demo_module_imports_nothing_heavy():
    code = (
        "import sys, cpo; before = set(sys.modules); import cpo.demo; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "heavy = new & {'torch', 'transformers', 'datasets', 'matplotlib', 'num2words', 'peft'}; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
