"""The non-finite guard: a NaN or inf loss or gradient norm stops training (or skips the step), never the weights.

Each micro-batch's loss is folded into one flag on the device (no sync); once per optimiser step, just before the
optimiser would apply the gradients, the flag and the gradient norm are checked together. On a bad step:

- ``on_nonfinite="raise"`` (default): nothing is applied and :class:`NonFiniteError` names the step and the dataset
  rows of its batches;
- ``on_nonfinite="skip"``: the gradients are dropped, so the optimiser leaves every weight and its state untouched;
  the step is counted, logged with its rows, and reported as ``nonfinite_skipped_steps``.

Checkpoints are checked too: weights that are not finite are never saved.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger("cpo")


class NonFiniteError(RuntimeError):
    """Training produced a NaN or inf; the message names the optimiser step and the dataset rows involved."""


class NonFiniteGuard:
    """Tracks one optimiser step's losses and rows; ``check`` decides at the step's end. ``likely_cause`` (the
    configuration's known hazard, if any) is added to the message."""

    def __init__(self, policy: str, accelerator, likely_cause: str = ""):
        self.policy, self.accelerator, self.likely_cause = policy, accelerator, likely_cause
        self.skipped = 0
        self._bad: torch.Tensor | None = None
        self._rows: list[torch.Tensor] = []

    def observe(self, loss: torch.Tensor, row_index: torch.Tensor) -> None:
        """Record a micro-batch: its loss (checked later, without a sync now) and its dataset rows."""
        bad = ~torch.isfinite(loss.detach())
        self._bad = bad if self._bad is None else self._bad | bad
        self._rows.append(row_index.detach())

    def check(self, model, grad_norm, step: int) -> None:
        """At the end of optimiser step ``step`` (1-based): raise, or drop the gradients, if anything was not finite."""
        loss_bad = self._bad if self._bad is not None else torch.zeros((), dtype=torch.bool)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()  # FSDP2: the norm is a DTensor over the shards
        norm = torch.as_tensor(grad_norm if grad_norm is not None else 0.0, dtype=torch.float32)
        flags = torch.stack([loss_bad.float().cpu(), (~torch.isfinite(norm)).float().cpu()])
        rows, self._bad, self._rows = self._rows, None, []
        if self.accelerator.num_processes > 1:
            flags = self.accelerator.reduce(flags.to(self.accelerator.device), reduction="sum").cpu()
        if not flags.any():
            return
        what = " and ".join(n for n, f in zip(("loss", "gradient norm"), flags.tolist()) if f)
        row_ids = torch.cat(rows).tolist() if rows else []
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            row_ids = gather_object(row_ids)
        message = (f"Non-finite {what} at optimiser step {step} (gradient norm {float(norm):.4g}); its micro-batches "
                   f"hold dataset rows {sorted(row_ids)}.")
        if self.likely_cause:
            message += f" Likely cause: {self.likely_cause}"
        if self.policy == "raise":
            raise NonFiniteError(message + " No update was applied. Inspect those rows, lower the learning rate, or "
                                 "set on_nonfinite='skip' to skip such steps.")
        for p in model.parameters():
            p.grad = None  # an optimiser skips parameters without gradients: no update, no state change
        self.skipped += 1
        logger.warning(message + f" Skipped the step ({self.skipped} skipped so far).")

    @staticmethod
    def check_weights(model, where: str) -> None:
        """Refuse to save non-finite weights."""
        bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.detach()).all()]
        if bad:
            raise NonFiniteError(f"Refusing to save {where}: {len(bad)} parameters are not finite (first: {bad[0]}).")
