"""Micro-batches by a token budget, so each forward pass costs about the same whatever the lengths.

Pairs are sorted by length and cut greedily into batches of at most ``max_tokens`` laid-out tokens (and at most
``max_pairs`` pairs); the batches are fixed once, and only their order is shuffled each epoch, so the number of
batches (and of optimiser steps) never changes. A pair longer than the budget gets a batch of its own.
"""

from __future__ import annotations

import torch


def pair_tokens(prompt_len: int, chosen_len: int, rejected_len: int, shared_prompt: bool) -> int:
    """Tokens a pair occupies in the layout: ``P + C + R`` with a shared prompt, ``2P + C + R`` otherwise."""
    return prompt_len * (1 if shared_prompt else 2) + chosen_len + rejected_len


def token_budget_batches(lengths: list[int], max_tokens: int, max_pairs: int | None = None) -> list[list[int]]:
    """Cut the pairs, longest first, into batches of at most ``max_tokens`` tokens and ``max_pairs`` pairs.

    >>> token_budget_batches([5, 3, 9, 2, 2], max_tokens=10)
    [[2], [0, 1, 3], [4]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, current, used = [], [], 0
    for i in order:
        full = max_pairs is not None and len(current) >= max_pairs
        if current and (used + lengths[i] > max_tokens or full):
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        batches.append(current)
    return batches


class TokenBudgetBatchSampler:
    """A batch sampler over fixed token-budget batches, in a new seeded order each epoch."""

    def __init__(self, lengths: list[int], max_tokens: int, max_pairs: int | None, seed: int, shuffle: bool = True):
        self.batches = token_budget_batches(lengths, max_tokens, max_pairs)
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        order = range(len(self.batches))
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.batches), generator=gen).tolist()
        for b in order:
            yield list(self.batches[b])
