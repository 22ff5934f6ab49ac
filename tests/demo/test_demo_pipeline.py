"""Demo orchestration pieces: layer freezing, disjoint splits and seeded flaws, the shared training config."""

import subprocess
import sys
from dataclasses import replace

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from cpo.demo.pipeline import FULL, build_data, check_settings, freeze_lower_layers, reference_rows, train_config
from cpo.demo.task import Reference


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


def test_cpo_demo_module_imports_nothing_heavy():
    code = (
        "import sys, cpo; before = set(sys.modules); import cpo.demo; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "heavy = new & {'torch', 'transformers', 'datasets', 'matplotlib', 'num2words', 'peft'}; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_data_splits_are_disjoint_and_flaws_are_seeded():
    data = build_data(FULL)
    sft, pref = [r.number for r in data.sft_refs], [r.number for r in data.pref_refs]
    held = data.eval_numbers
    val = build_data(replace(FULL, eval_split="validation")).eval_numbers
    assert (len(sft), len(pref), len(held), len(val)) == (200, 200, 100, 100)
    assert len(set(sft) | set(pref) | set(held) | set(val)) == 600  # disjoint
    assert data.train_numbers("test") == sft + pref + val and not set(data.train_numbers("test")) & set(held)
    assert data.validation_numbers == val
    assert sum(r.flaw is not None for r in data.sft_refs) == 60 == sum(r.flaw is not None for r in data.pref_refs)
    again = build_data(FULL)
    assert again.sft_refs == data.sft_refs and again.pref_refs == data.pref_refs  # reproducible
    other = build_data(replace(FULL, seed=1))
    assert [r.number for r in other.sft_refs] != sft
    assert {r.flaw for r in data.sft_refs} == {None, "no_and", "no_hyphen", "neighbour"}
    assert len(data.sft_rejected) == 200 and all(w != r.text for w, r in zip(data.sft_rejected, data.sft_refs))
    assert len(data.pref_rejected) == 200 and all(w != r.text for w, r in zip(data.pref_rejected, data.pref_refs))
    with pytest.raises(ValueError, match="exceed the"):
        build_data(replace(FULL, sft_numbers=700))


def test_every_run_shares_everything_but_the_loss(tmp_path):
    sft = train_config(FULL, "sft", tmp_path, progress=False).to_dict()
    cpo = train_config(FULL, "sigmoid", tmp_path, progress=False).to_dict()
    arpo = train_config(FULL, "sigmoid", tmp_path, progress=False, arpo=True).to_dict()
    assert {k for k in sft if sft[k] != cpo[k]} == {"loss_type"}
    assert {k for k in cpo if cpo[k] != arpo[k]} == {"arpo"} and (arpo["arpo_c1"], arpo["arpo_c2"]) == (0.9, 0.4)
    assert (cpo["learning_rate"], cpo["max_steps"], cpo["cpo_alpha"]) == (FULL.learning_rate, FULL.steps, 1.0)


def test_reference_rows():
    refs = [Reference(7, "en", "seven"), Reference(21, "en", "twenty one", "no_hyphen")]
    rows = reference_rows(refs, ["eight", "twelve"])
    assert rows[1] == {"prompt": [{"role": "user", "content": "Write 21 in English words."}],
                       "chosen": [{"role": "assistant", "content": "twenty one"}],
                       "rejected": [{"role": "assistant", "content": "twelve"}]}


def test_check_settings_refuses_unknown_arms_and_judges():
    check_settings(replace(FULL, arms=("sft_chosen", "cpo", "arpo"), judges=("oracle", "noisy-0.2", "chrf-ref")))
    with pytest.raises(ValueError, match="Unknown demo arm"):
        check_settings(replace(FULL, arms=("dpo",)))
    with pytest.raises(ValueError, match="is not a judge"):
        check_settings(replace(FULL, judges=("oracle", "noisy-3")))
