"""Model kinds: encoder-decoder (T5), PEFT/LoRA, MoE with router aux loss; each against TRL 1.16."""

import copy
import logging
import math

import pytest
import torch
from helpers import tiny_qwen2, train_logs, zen
from test_trl_parity import assert_parity, run_both

from cpo import CPOTrainer


def tiny_t5(tok):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    pad = tok.eos_token_id
    config = T5Config(vocab_size=len(tok), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4,
                      decoder_start_token_id=pad, pad_token_id=pad, eos_token_id=pad)
    return T5ForConditionalGeneration(config)


def test_encoder_decoder_matches_trl(tmp_path, tok):
    """T5: the prompt is the encoder input, completions are decoder labels (TRL caps them at 128 tokens).

    SGD, not AdamW: Adam's first step is about lr * sign(g), so fp32 rounding in T5's near-zero gradients becomes
    whole-lr weight differences (under transformers 5.24, 1.2e-5 of step 2's grad norm, with the losses equal to
    4e-7); with SGD every key agrees to 1e-7 and the test still compares three steps."""
    ours, theirs = run_both(tmp_path, tok, zen("standard_preference"), model=tiny_t5(tok), optim="sgd")
    assert_parity(ours, theirs)


def test_encoder_decoder_uses_the_chunked_head_with_t5_scaling(tmp_path, tok):
    """T5 scales the decoder output by d_model ** -0.5 before its tied head; the capture sees the scaled input."""
    from helpers import train_args

    trainer = CPOTrainer(model=tiny_t5(tok), args=train_args(tmp_path), processing_class=copy.deepcopy(tok),
                         train_dataset=zen("standard_preference"))
    assert trainer.routes.head is not None and trainer.is_encoder_decoder


LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def test_peft_lora_matches_trl_and_trains_only_the_adapter(tmp_path, tok):
    from peft import LoraConfig

    ours, theirs = run_both(tmp_path, tok, zen("standard_preference"), peft_config=LoraConfig(**LORA))
    assert_parity(ours, theirs)


def test_peft_model_passed_directly_and_lm_head_adapter_falls_back(tmp_path, tok, caplog):
    from helpers import train_args
    from peft import LoraConfig, get_peft_model

    base = tiny_qwen2(len(tok))
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(**LORA))
    trainer = CPOTrainer(model=peft_model, args=train_args(tmp_path / "a"), processing_class=copy.deepcopy(tok),
                         train_dataset=zen("standard_preference"))
    assert trainer.routes.head is not None  # the head itself is a frozen plain Linear: chunked log-probs stay on
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    logs = train_logs(trainer)
    assert all(math.isfinite(x["loss"]) for x in logs)
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)

    head_lora = LoraConfig(**{**LORA, "target_modules": ["q_proj", "lm_head"]})
    with caplog.at_level(logging.WARNING, logger="cpo"):
        trainer = CPOTrainer(model=copy.deepcopy(base), args=train_args(tmp_path / "b"), peft_config=head_lora,
                             processing_class=copy.deepcopy(tok), train_dataset=zen("standard_preference"))
    assert trainer.routes.head is None and "Chunked log-probs: off" in caplog.text and "PEFT adapter" in caplog.text
    assert all(math.isfinite(x["loss"]) for x in train_logs(trainer))
    with pytest.raises(ValueError, match="PeftModel and a peft_config"):
        CPOTrainer(model=peft_model, args=train_args(tmp_path / "c"), peft_config=LoraConfig(**LORA),
                   processing_class=tok, train_dataset=zen("standard_preference"))


def tiny_mixtral(vocab_size):
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    config = MixtralConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                           output_router_logits=True, router_aux_loss_coef=0.05, max_position_embeddings=512)
    return MixtralForCausalLM(config)


def test_moe_router_aux_loss_is_added_and_logged(tmp_path, tok):
    """TRL adds router_aux_loss_coef * aux_loss to the loss but never logs it; we log it as aux_loss."""
    ours, theirs = run_both(tmp_path, tok, zen("standard_preference"), model=tiny_mixtral(len(tok)))
    assert_parity(ours, theirs)
    for entry in ours:
        assert entry["aux_loss"] > 0 and math.isfinite(entry["aux_loss"])


def test_head_capture_refuses_a_head_still_sharded_at_its_forward(tok):
    """FSDP2 wrapping the LM head as its own unit leaves a DTensor where the chunked path needs the full weight."""
    from types import SimpleNamespace

    from cpo.modeling import HeadInputCapture, lm_head_of

    model = tiny_qwen2(len(tok))
    head, module, _ = lm_head_of(model)
    capture = HeadInputCapture(module)
    with capture, torch.no_grad():
        model(input_ids=torch.tensor([[5, 6, 7]]))
    assert capture.head_used(head).weight is module.weight and capture.hidden.shape == (1, 3, 64)
    capture.weight = SimpleNamespace(full_tensor=lambda: None)  # what a sharded DTensor parameter looks like
    with pytest.raises(RuntimeError, match="still sharded when the head runs.*chunked_logits=False"):
        capture.head_used(head)
