"""Token-budget micro-batches: budgets hold, every pair once per epoch, a stable number of batches."""

import logging

import pytest
import torch
from helpers import tiny_qwen2, train_args, zen

from cpo import CPOTrainer
from cpo.batching import TokenBudgetBatchSampler, pair_tokens, token_budget_batches


def test_pair_tokens_counts_the_prompt_once_when_shared():
    assert pair_tokens(10, 3, 4, shared_prompt=True) == 17
    assert pair_tokens(10, 3, 4, shared_prompt=False) == 27


@pytest.mark.parametrize("max_tokens,max_pairs", [(50, None), (120, 4), (7, None)])
def test_budgets_hold_and_every_pair_appears_once(max_tokens, max_pairs):
    lengths = torch.randint(1, 40, (200,), generator=torch.Generator().manual_seed(0)).tolist()
    batches = token_budget_batches(lengths, max_tokens, max_pairs)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) == 1 or sum(lengths[i] for i in b) <= max_tokens  # an over-budget pair sits alone
        assert max_pairs is None or len(b) <= max_pairs


def test_sampler_reshuffles_batches_not_their_number():
    lengths = list(range(1, 60))
    sampler = TokenBudgetBatchSampler(lengths, 64, None, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert len(first) == len(second) == len(sampler)
    assert sorted(map(tuple, first)) == sorted(map(tuple, second)) and first != second


def test_trainer_with_a_token_budget_logs_pairs_per_step(tmp_path, tok, caplog):
    data = zen("standard_preference")
    args = train_args(tmp_path, max_steps=-1, num_train_epochs=1, max_tokens_per_batch=120,
                      per_device_train_batch_size=16, gradient_accumulation_steps=2)
    with caplog.at_level(logging.INFO, logger="cpo"):
        trainer = CPOTrainer(model=tiny_qwen2(len(tok)), args=args, processing_class=tok, train_dataset=data)
        loader = trainer.get_train_dataloader()
    assert "Token-budget batches:" in caplog.text
    seen = []
    for batch in loader:
        seen += batch["row_index"].tolist()
        assert (batch["unit_ids"] >= 0).sum() <= 120 or batch["row_index"].numel() == 1
    assert sorted(seen) == list(range(len(data)))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    per_step = [h["pairs_per_step"] for h in logs]
    assert len(logs) == (len(loader) + 1) // 2
    assert sum(per_step) == len(data) and all(p >= 1 for p in per_step)
