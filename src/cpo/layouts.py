"""Batch layouts: how the sequences of a batch of pairs are laid out for one forward pass.

- ``padded`` (the reference, TRL's layout): ``2B`` rows, chosen then rejected, each ``prompt + completion``,
  right-padded to the longest, with a 2D attention mask.
- ``packed`` (padding-free): the same ``2B`` sequences concatenated into rows with no padding inside, position ids
  restarting at each sequence and attention that never crosses a sequence boundary.
- ``shared`` (prefix sharing): each pair laid out once as ``prompt + chosen + rejected``; rejected tokens attend to
  the prompt and to themselves, not to the chosen tokens, and their position ids continue from the end of the prompt.
  With ``packed`` as well, these pair blocks are packed into rows too.

Every layout returns the same scored-token lists (see :mod:`cpo.logprobs`), so the loss code never knows which
layout ran. Packed and shared layouts describe their attention with ``unit_ids`` (which block a token belongs to,
-1 for padding) and ``branch_ids`` (0 shared/plain, 1 chosen, 2 rejected); :func:`block_mask` turns them into a dense
mask, and :mod:`cpo.path_attention` into causal paths with no mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class _Unit:
    """One contiguous block of a row: a single sequence, or a whole pair when the prefix is shared."""

    ids: list[int]
    positions: list[int]
    branches: list[int]
    targets: list[tuple[int, int, int]]  # (local position, next token id, sequence index)


def _sequence_unit(prompt: list[int], completion: list[int], seq: int, unscored: int = 0) -> _Unit:
    ids = prompt + completion
    p = len(prompt)
    targets = [(p - 1 + j, tok, seq) for j, tok in enumerate(completion) if j >= unscored]
    return _Unit(ids, list(range(len(ids))), [0] * len(ids), targets)


def _pair_unit(prompt: list[int], chosen: list[int], rejected: list[int], i: int, num_pairs: int,
               unscored: tuple[int, int] = (0, 0)) -> _Unit:
    p, c = len(prompt), len(chosen)
    ids = prompt + chosen + rejected
    positions = list(range(p + c)) + list(range(p, p + len(rejected)))
    branches = [0] * p + [1] * c + [2] * len(rejected)
    targets = [(p - 1 + j, tok, i) for j, tok in enumerate(chosen) if j >= unscored[0]]
    # The first rejected token is predicted by the last prompt token; later ones by the rejected token before them.
    targets += [((p - 1) if j == 0 else (p + c + j - 1), tok, num_pairs + i) for j, tok in enumerate(rejected)
                if j >= unscored[1]]
    return _Unit(ids, positions, branches, targets)


def _unscored(feature: dict) -> tuple[int, int]:
    """Leading completion tokens that are context, not scored (``tokenize_jointly``; 0 otherwise)."""
    return feature.get("chosen_unscored", 0), feature.get("rejected_unscored", 0)


def _pack(units: list[_Unit], capacity: int) -> list[list[_Unit]]:
    """First-fit decreasing: rows of at most ``capacity`` tokens (a longer unit gets a row of its own)."""
    rows: list[list[_Unit]] = []
    room: list[int] = []
    for unit in sorted(units, key=lambda u: len(u.ids), reverse=True):
        n = len(unit.ids)
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(unit)
                room[r] -= n
                break
        else:
            rows.append([unit])
            room.append(capacity - n)
    return rows


def _check_features(features: list[dict]) -> None:
    for f in features:
        if not f["prompt_input_ids"] or not f["chosen_input_ids"] or not f["rejected_input_ids"]:
            raise ValueError(
                f"Row {f.get('row_index', '?')}: a tokenized prompt or completion is empty; rows must be tokenized "
                "by CPOTrainer (prompt_input_ids with at least a start token, non-empty completions)."
            )


@dataclass
class PreferenceCollator:
    """Collate tokenized pairs into one of the layouts above.

    Args:
        pad_token_id: id written into padding positions (never attended to, never scored).
        packed: concatenate sequences into rows without padding.
        shared_prompt: lay each pair out once as ``prompt + chosen + rejected``.
        max_row_tokens: capacity of a packed row; ``None`` uses the longest block of the batch, which keeps each
            row no longer than the padded layout's rows (for a dense block mask, whose cost is the square of a
            row's length), while ``0`` packs everything into one row (for attention whose cost does not grow with
            the row: path attention, see :mod:`cpo.path_attention`, and varlen kernels such as FlashAttention).

    Output keys: ``row_index`` (B,), ``input_ids`` (R, L), ``target_positions`` / ``target_ids`` / ``target_seq``
    (N,), and ``attention_mask`` (R, L) for the padded layout or ``position_ids`` / ``unit_ids`` / ``branch_ids``
    (R, L) for the others. Row counts are ``2B`` padded, fewer when packed.
    """

    pad_token_id: int
    packed: bool = False
    shared_prompt: bool = False
    max_row_tokens: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        _check_features(features)
        b = len(features)
        if self.shared_prompt:
            units = [
                _pair_unit(f["prompt_input_ids"], f["chosen_input_ids"], f["rejected_input_ids"], i, b, _unscored(f))
                for i, f in enumerate(features)
            ]
        else:
            units = [_sequence_unit(f["prompt_input_ids"], f["chosen_input_ids"], i, _unscored(f)[0])
                     for i, f in enumerate(features)]
            units += [_sequence_unit(f["prompt_input_ids"], f["rejected_input_ids"], b + i, _unscored(f)[1])
                      for i, f in enumerate(features)]
        if self.packed:
            longest = max(len(u.ids) for u in units)
            capacity = sum(len(u.ids) for u in units) if self.max_row_tokens == 0 else self.max_row_tokens or longest
            rows = _pack(units, max(capacity, longest))
        else:
            rows = [[u] for u in units]
        batch = self._tensors(rows)
        batch["row_index"] = torch.tensor([f.get("row_index", -1) for f in features], dtype=torch.long)
        return {"row_index": batch.pop("row_index"), **batch}

    def _tensors(self, rows: list[list[_Unit]]) -> dict[str, torch.Tensor]:
        width = max(sum(len(u.ids) for u in row) for row in rows)
        shape = (len(rows), width)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros(shape, dtype=torch.long)
        unit_ids = torch.full(shape, -1, dtype=torch.long)
        branch_ids = torch.zeros(shape, dtype=torch.long)
        positions, targets, seqs = [], [], []
        unit_counter = 0
        for r, row in enumerate(rows):
            offset = 0
            for unit in row:
                n = len(unit.ids)
                input_ids[r, offset : offset + n] = torch.tensor(unit.ids)
                position_ids[r, offset : offset + n] = torch.tensor(unit.positions)
                branch_ids[r, offset : offset + n] = torch.tensor(unit.branches)
                unit_ids[r, offset : offset + n] = unit_counter
                for local, tok, seq in unit.targets:
                    positions.append(r * width + offset + local)
                    targets.append(tok)
                    seqs.append(seq)
                offset += n
                unit_counter += 1
        batch = {
            "input_ids": input_ids,
            "target_positions": torch.tensor(positions, dtype=torch.long),
            "target_ids": torch.tensor(targets, dtype=torch.long),
            "target_seq": torch.tensor(seqs, dtype=torch.long),
        }
        if self.packed or self.shared_prompt:
            batch.update(position_ids=position_ids, unit_ids=unit_ids, branch_ids=branch_ids)
        else:
            batch["attention_mask"] = (unit_ids >= 0).long()
        return batch


def block_mask(unit_ids: torch.Tensor, branch_ids: torch.Tensor) -> torch.Tensor:
    """``(R, L), (R, L) -> (R, 1, L, L)`` bool mask, True where query ``q`` may attend to key ``k``.

    ``k`` is visible from ``q`` when both are in the same block, ``k`` is not after ``q``, and ``k`` is shared
    (branch 0) or on the same branch as ``q``. Padding (block -1) sees only itself, so no row is fully masked.
    """
    length = unit_ids.shape[1]
    idx = torch.arange(length, device=unit_ids.device)
    causal = idx[None, :, None] >= idx[None, None, :]
    same_unit = unit_ids[:, :, None] == unit_ids[:, None, :]
    branch_q, branch_k = branch_ids[:, :, None], branch_ids[:, None, :]
    visible = same_unit & causal & ((branch_k == 0) | (branch_k == branch_q))
    padding = (unit_ids < 0)[:, :, None] & torch.eye(length, dtype=torch.bool, device=unit_ids.device)[None]
    return (visible & (unit_ids >= 0)[:, :, None] | padding)[:, None]


@dataclass
class EncoderDecoderCollator:
    """Padded layout for encoder-decoder models: the prompt is the encoder input, completions are the decoder labels.

    Rows are ``2B`` (chosen then rejected, each with its prompt); ``decoder_input_ids`` are the labels shifted right
    behind ``decoder_start_token_id``. Scored positions are every label position.
    """

    pad_token_id: int
    decoder_start_token_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        _check_features(features)
        b = len(features)
        prompts = [f["prompt_input_ids"] for f in features] * 2
        labels = [f["chosen_input_ids"] for f in features] + [f["rejected_input_ids"] for f in features]
        enc_len, dec_len = max(map(len, prompts)), max(map(len, labels))
        input_ids = torch.full((2 * b, enc_len), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((2 * b, enc_len), dtype=torch.long)
        decoder_input_ids = torch.full((2 * b, dec_len), self.pad_token_id, dtype=torch.long)
        positions, targets, seqs = [], [], []
        for s, (p, lab) in enumerate(zip(prompts, labels)):
            input_ids[s, : len(p)] = torch.tensor(p)
            attention_mask[s, : len(p)] = 1
            decoder_input_ids[s, : len(lab)] = torch.tensor([self.decoder_start_token_id] + lab[:-1])
            positions += [s * dec_len + t for t in range(len(lab))]
            targets += lab
            seqs += [s] * len(lab)
        return {
            "row_index": torch.tensor([f.get("row_index", -1) for f in features], dtype=torch.long),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": decoder_input_ids,
            "target_positions": torch.tensor(positions, dtype=torch.long),
            "target_ids": torch.tensor(targets, dtype=torch.long),
            "target_seq": torch.tensor(seqs, dtype=torch.long),
        }
