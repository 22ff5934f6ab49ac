"""Progress bars of the demo: one ``tqdm`` bar per phase, and a Trainer callback that draws the training and
evaluation bars compactly (the latest loss and preference accuracy as a postfix, instead of a dict per step)."""

from __future__ import annotations

from tqdm.auto import tqdm
from transformers import TrainerCallback


def phase_bar(total: int, desc: str, enabled: bool = True, unit: str = "it"):
    """A ``tqdm`` bar for one phase of the demo; disabled bars still accept ``update``."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, leave=True)


class PhaseBars(TrainerCallback):
    """Replaces transformers' ``ProgressCallback``: a training bar named after the run, with loss and
    ``rewards/accuracies`` of the latest logged step, and an evaluation bar."""

    def __init__(self, name: str, enabled: bool = True):
        self.name, self.enabled = name, enabled
        self.train_bar = None
        self.eval_bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_bar = phase_bar(state.max_steps, f"{self.name}: training", self.enabled, unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.train_bar is not None:
            self.train_bar.update(state.global_step - self.train_bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.train_bar is not None and logs and "loss" in logs:
            post = {"loss": f"{logs['loss']:.3f}"}
            if "rewards/accuracies" in logs:
                post["pref_acc"] = f"{logs['rewards/accuracies']:.2f}"
            self.train_bar.set_postfix(post, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.train_bar is not None:
            self.train_bar.close()
            self.train_bar = None

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.eval_bar is None:
            total = len(eval_dataloader) if eval_dataloader is not None else None
            self.eval_bar = phase_bar(total, f"{self.name}: preference accuracy", self.enabled, unit="batch")
        self.eval_bar.update(1)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.eval_bar is not None:
            self.eval_bar.close()
            self.eval_bar = None
