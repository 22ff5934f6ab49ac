"""Per-token and per-sequence log-probs, in fp32, from logits and flat target lists.

A batch names its scored tokens as flat lists rather than a ``(B, T)`` labels tensor: ``target_positions`` (N,)
indexes the flattened ``(R * L)`` positions whose next token is scored, ``target_ids`` (N,) holds those next tokens
and ``target_seq`` (N,) the sequence each one belongs to (chosen ``i`` is sequence ``i``, rejected ``i`` is ``B + i``).
A position may appear twice: with prefix sharing the last prompt token predicts both the first chosen and the first
rejected token. Prompt and padding positions never appear, so nothing is computed for them downstream.
"""

from __future__ import annotations

import torch


def token_logps_from_logits(logits: torch.Tensor, target_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Naive reference: ``log_softmax(logits.float())[n, target_ids[n]]``.

    Args:
        logits: ``(N, V)`` logits at the scored positions, any float dtype.
        target_ids: ``(N,)`` int64 next-token ids.

    Returns:
        ``(token_logps, token_logit_means)``: ``(N,)`` fp32 log-probs (differentiable) and ``(N,)`` fp32 means of the
        logits over the vocabulary (detached; the ``logits/*`` metrics).
    """
    logits = logits.float()
    token_logps = logits.log_softmax(-1).gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
    return token_logps, logits.detach().mean(-1)


def segment_sum(values: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    """``out[s] = sum(values[segment == s])``; differentiable in ``values``. Shapes ``(N,), (N,) -> (S,)``."""
    out = values.new_zeros(num_segments)
    return out.index_add(0, segment, values)


def sequence_logps(
    token_logps: torch.Tensor, target_seq: torch.Tensor, num_seqs: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs and scored-token counts of each sequence.

    Args:
        token_logps: ``(N,)`` fp32 per-token log-probs.
        target_seq: ``(N,)`` int64 sequence index of each token, in ``[0, num_seqs)``.
        num_seqs: number of sequences S (``2B``: chosen then rejected).

    Returns:
        ``(sums, counts)``, each ``(S,)`` fp32. A sequence with no scored token has sum 0 and count 0.
    """
    sums = segment_sum(token_logps, target_seq, num_seqs)
    counts = segment_sum(torch.ones_like(token_logps), target_seq, num_seqs)
    return sums, counts


def average_logps(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Length-normalised log-probs ``sums / counts``, defined as 0 for an empty sequence (never 0/0 = NaN)."""
    return sums / counts.clamp(min=1.0)
