"""The non-finite guard: a NaN at optimiser step 2 stops training naming the step and rows, or is skipped."""

import copy

import pytest
import torch
from helpers import tiny_qwen2, train_args, zen
from transformers import TrainerCallback

from cpo import CPOTrainer
from cpo.guard import NonFiniteError


class PoisonStep(TrainerCallback):
    """Makes the first decoder layer output NaN during optimiser step ``step`` (1-based), and records the weights
    around it."""

    def __init__(self, model, step: int):
        self.step, self.active, self.before, self.after = step, False, None, None
        model.model.layers[0].register_forward_hook(lambda m, i, o: (o * float("nan")) if self.active else None)
        self.model = model

    def on_step_begin(self, args, state, control, **kw):
        self.active = state.global_step + 1 == self.step
        if self.active:
            self.before = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def on_step_end(self, args, state, control, **kw):
        if self.active:
            self.after = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.active = False


def batches_of_step(trainer, step: int) -> list[int]:
    loader = trainer.get_train_dataloader()
    batches = list(loader)
    return sorted(batches[step - 1]["row_index"].tolist())


def test_nan_stops_training_naming_the_step_and_its_rows(tmp_path, tok):
    model = tiny_qwen2(len(tok))
    poison = PoisonStep(model, step=2)
    trainer = CPOTrainer(model=model, args=train_args(tmp_path, max_steps=4), processing_class=tok,
                         train_dataset=zen("standard_preference"), callbacks=[poison])
    rows = batches_of_step(trainer, 2)
    with pytest.raises(NonFiniteError) as err:
        trainer.train()
    assert "Non-finite loss and gradient norm at optimiser step 2" in str(err.value)
    assert f"dataset rows {rows}" in str(err.value) and "No update was applied" in str(err.value)
    for p in model.parameters():
        assert torch.isfinite(p).all()
    assert trainer.state.global_step == 1


def test_skip_policy_leaves_weights_untouched_and_counts(tmp_path, tok):
    model = tiny_qwen2(len(tok))
    poison = PoisonStep(model, step=2)
    args = train_args(tmp_path, max_steps=4, on_nonfinite="skip")
    trainer = CPOTrainer(model=model, args=args, processing_class=tok, train_dataset=zen("standard_preference"),
                         callbacks=[poison])
    trainer.train()
    for name, value in poison.before.items():
        torch.testing.assert_close(poison.after[name], value, rtol=0, atol=0)  # nothing applied at step 2
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["nonfinite_skipped_steps"] for h in logs] == [0, 1, 1, 1]
    assert trainer.state.global_step == 4 and all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_weights_are_never_saved(tmp_path, tok):
    model = tiny_qwen2(len(tok))
    trainer = CPOTrainer(model=copy.deepcopy(model), args=train_args(tmp_path, max_steps=1), processing_class=tok,
                         train_dataset=zen("standard_preference"))
    trainer.train()
    with torch.no_grad():
        trainer.model.model.norm.weight[0] = float("inf")
    with pytest.raises(NonFiniteError, match="Refusing to save checkpoint 1: 1 parameters are not finite"):
        trainer._save_checkpoint(trainer.model, None)
    assert not list(tmp_path.glob("checkpoint-*"))


def test_the_error_names_the_alphapo_hazard_as_the_likely_cause(tmp_path, tok):
    """Whatever still goes non-finite with AlphaPO on summed log-probs, the error says what the config risks."""
    model = tiny_qwen2(len(tok))
    poison = PoisonStep(model, step=1)
    trainer = CPOTrainer(model=model, args=train_args(tmp_path, max_steps=2, alpha=0.25), processing_class=tok,
                         train_dataset=zen("standard_preference"), callbacks=[poison])
    with pytest.raises(NonFiniteError) as err:
        trainer.train()
    assert "at optimiser step 1" in str(err.value)
    assert "Likely cause: alpha=0.25 applies the AlphaPO reward (1 - p^-alpha) / alpha to summed log-probs" in str(
        err.value)
    plain = CPOTrainer(model=tiny_qwen2(len(tok)), args=train_args(tmp_path, max_steps=2), processing_class=tok,
                       train_dataset=zen("standard_preference"), callbacks=[PoisonStep(model, step=1)])
    assert plain._guard.likely_cause == ""
