"""Metric sums kept on the device between logs, reduced across processes once per log.

Each metric is a ratio ``sum / count`` over everything seen since the last log: per pair for rewards and log-probs,
per completion token for ``nll_loss`` and ``logits/*``. So a logged value is the same whatever the split of the
pairs into micro-batches, accumulation steps and processes. Nothing is moved to the host until the log.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class MetricSums:
    """``add`` detached sums and counts per split; ``pop`` reduces all of a split's metrics in one collective."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, list[torch.Tensor]]] = {}

    def add(self, split: str, name: str, total: torch.Tensor, count: torch.Tensor | float) -> None:
        total = total.detach().double()
        count = torch.as_tensor(count, dtype=torch.float64, device=total.device)
        slot = self._data.setdefault(split, {}).get(name)
        if slot is None:
            self._data[split][name] = [total, count]
        else:
            slot[0] = slot[0] + total
            slot[1] = slot[1] + count

    def has(self, split: str) -> bool:
        return bool(self._data.get(split))

    def pop(
        self, split: str, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, prefix: str = ""
    ) -> dict[str, float]:
        """Ratios of the split's metrics since the last pop, summed over processes by ``reduce``; names get
        ``prefix`` (e.g. ``eval_``)."""
        data = self._data.pop(split, {})
        if not data:
            return {}
        names = sorted(data)
        stacked = torch.stack([torch.stack(data[n]) for n in names])  # (K, 2): sums, counts
        if reduce is not None:
            stacked = reduce(stacked)
        values = (stacked[:, 0] / stacked[:, 1].clamp(min=1e-12)).tolist()
        return {f"{prefix}{n}": v for n, v in zip(names, values)}
