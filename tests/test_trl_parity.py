"""Parity with TRL 1.16's CPOTrainer: same tiny model, batch and seed; the loss and every logged metric of the
first 3 steps agree within 1e-5 relative (fp32, no gradient accumulation).

Where we differ on purpose, the test says so and asserts our behaviour instead:
- ``logits/*``: TRL averages the logits over every position (prompt and padding included); we average over the
  completion tokens only (checked against a direct computation in test_trainer.py).
- ``nll_loss`` with ``cpo_alpha=0``: TRL logs 0; we log the actual NLL of the chosen completions.
- AlphaPO on summed log-probs (sigmoid/hinge with ``alpha != 0``): TRL's gradient is NaN as soon as a summed
  log-prob passes about -87 (``exp(logp)`` is subnormal in fp32), as on these tables; ours is finite
  (test_trainer.py). The ``alpha`` parity cases therefore use the per-token-average losses.
- conversational data with a template that already ends the turn: TRL appends EOS after it and prepends a BOS the
  template does not write; we do not (test_tokenization.py). The conversational cases here use a template where the
  turn ends with EOS and the prompt starts with BOS, so both libraries see the same tokens.
"""

import copy
import math

import pytest
from helpers import tiny_qwen2, train_args, train_logs, zen

import cpo

OURS_ONLY = {"logits/chosen", "logits/rejected", "aux_loss"}


def run_both(tmp_path, tokenizer, dataset, model=None, peft_config=None, ours_only=None, **config):
    from trl.experimental.cpo import CPOConfig as TRLConfig
    from trl.experimental.cpo import CPOTrainer as TRLTrainer

    base = model if model is not None else tiny_qwen2(len(tokenizer))
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token  # TRL's collator needs it before init
    logs = {}
    for name, cfg_cls, trainer_cls in (("ours", None, cpo.CPOTrainer), ("trl", TRLConfig, TRLTrainer)):
        if cfg_cls is None:
            args = train_args(tmp_path / name, **config, **(ours_only or {}))
        else:
            args = cfg_cls(
                output_dir=str(tmp_path / name), per_device_train_batch_size=4, max_steps=3, logging_steps=1,
                learning_rate=1e-3, report_to="none", save_strategy="no", seed=0, disable_tqdm=True, bf16=False,
                **config,
            )
        trainer = trainer_cls(
            model=copy.deepcopy(base), args=args, processing_class=copy.deepcopy(tokenizer), train_dataset=dataset,
            peft_config=copy.deepcopy(peft_config),
        )
        logs[name] = train_logs(trainer)
    return logs["ours"], logs["trl"]


def assert_parity(ours, theirs, skip=()):
    assert len(ours) == len(theirs) == 3
    for step, (a, b) in enumerate(zip(ours, theirs)):
        keys = set(b) - OURS_ONLY - set(skip)
        assert keys <= set(a), f"missing metrics {keys - set(a)}"
        for key in sorted(keys):
            if isinstance(b[key], (int, float)):
                assert math.isfinite(a[key]), (step, key)
                # the margin is a difference of rewards: its rounding is relative to the rewards, not to itself
                scale = max(abs(b[key]), abs(b.get("rewards/chosen", 0)), abs(b.get("rewards/rejected", 0))) \
                    if key == "rewards/margins" else abs(b[key])
                assert abs(a[key] - b[key]) <= max(1e-5 * scale, 1e-6), (step, key, a[key], b[key])


@pytest.mark.parametrize(
    "config",
    [
        {"loss_type": "sigmoid"},
        {"loss_type": "sigmoid", "label_smoothing": 0.1},
        {"loss_type": "hinge"},
        {"loss_type": "ipo"},
        {"loss_type": "simpo"},
        {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": 0.3},
        {"loss_type": "simpo", "alpha": 0.25},
        {"loss_type": "ipo", "alpha": -0.2},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_loss_types_match_trl(tmp_path, tok, config):
    ours, theirs = run_both(tmp_path, tok, zen("standard_preference"), **config)
    skip = ("nll_loss",) if config.get("cpo_alpha") == 0.0 else ()
    assert_parity(ours, theirs, skip)


def test_alphapo_matches_trl_and_logs_the_real_nll(tmp_path, tok):
    ours, theirs = run_both(tmp_path, tok, zen("standard_preference"), loss_type="alphapo", alpha=0.25)
    assert_parity(ours, theirs, skip=("nll_loss",))
    assert theirs[0]["nll_loss"] == 0.0  # TRL skips the NLL when cpo_alpha = 0
    # ours is the NLL of the chosen tokens: at step 1 (same weights, same batch) it equals the sigmoid run's NLL
    sigmoid, _ = run_both(tmp_path / "s", tok, zen("standard_preference"), loss_type="sigmoid")
    assert ours[0]["nll_loss"] == pytest.approx(sigmoid[0]["nll_loss"], rel=1e-6) and ours[0]["nll_loss"] > 1.0


CHATML_EOS_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.mark.parametrize(
    "name",
    ["standard_preference", "standard_implicit_prompt_preference", "conversational_preference",
     "conversational_implicit_prompt_preference"],
)
def test_dataset_formats_match_trl(tmp_path, qwen2_tokenizer, name):
    tokenizer = copy.deepcopy(qwen2_tokenizer)
    if name.startswith("conversational"):
        tokenizer.chat_template = CHATML_EOS_TEMPLATE
        tokenizer.bos_token, tokenizer.eos_token = "<|im_start|>", "<|im_end|>"
    ours, theirs = run_both(tmp_path, tokenizer, zen(name))
    assert_parity(ours, theirs)


def test_tokenize_jointly_matches_trl_where_tokens_merge(tmp_path, qwen2_tokenizer):
    """Rows whose answers start without a space (Qwen2 merges "." with the next letters): with tokenize_jointly
    every metric equals TRL's; tokenized apart (our default) the log-probs differ."""
    from datasets import Dataset
    from helpers import MERGING

    rows = Dataset.from_list(MERGING * 3)
    ours, theirs = run_both(tmp_path, qwen2_tokenizer, rows, ours_only={"tokenize_jointly": True})
    assert_parity(ours, theirs)
    apart, _ = run_both(tmp_path / "apart", qwen2_tokenizer, rows)
    assert not math.isclose(apart[0]["logps/chosen"], theirs[0]["logps/chosen"], rel_tol=1e-3)
