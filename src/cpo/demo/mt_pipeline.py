"""Orchestration of ``cpo demo --task mt``: the CPO paper's recipe on real translation, German to English, on Gemma 3
270M (arXiv 2401.08417, sections 2-3), with the WMT sentences shipped in the package (:mod:`cpo.demo.mt_data`).

1. **Stage 1, as ALMA**: SFT of the base model on human references with the zero-shot ALMA prompt: ``SFT-ref``.
   Trained once, from the first seed; the seeds replicate stage 2.
2. **Candidates**, per seed: for preference prompts drawn from their own part of the WMT'21 dev set, K samples of
   ``SFT-ref`` (:func:`cpo.mt.translate.translation_candidates`, what ``cpo generate`` runs), duplicates dropped and
   counted, with the reference as one more candidate.
3. **Judges** (:mod:`cpo.demo.mt_judges`): ``roundtrip`` (reference-free: back-translated by the base model, chrF
   against the source) and ``chrf-ref`` (chrF against the reference, the reference left out), best against worst.
4. **Stage 2**, each from ``SFT-ref`` with the same steps, batch, learning rate and data order: SFT on the
   references of the preference prompts, once; and per judge each arm of :data:`cpo.demo.pipeline.ARMS` (SFT on
   the chosen candidates, CPO, ARPO) on that judge's pairs. Runs are keyed ``ARM@JUDGE``.
5. **Measure** every model on the held-out sentences (WMT'22 test, or the WMT'21 validation part): BLEU and chrF of
   greedy translations (what ``cpo eval --mode translate`` computes), and the round-trip score of a fixed share of
   them, a reference-free view. The base model is measured few-shot, every trained model zero-shot.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import CPOTrainer
from ..generation import Decoding, unique_candidates
from ..mt.roundtrip import model_back_translator
from ..mt.scores import corpus_scores, sentence_scores
from ..mt.translate import translate, translation_candidates
from .mt_data import DevSplit, Sentence, load_slices, split_dev
from .mt_judges import JUDGES, judge_pairs, score_prompts
from .pipeline import (
    ARMS,
    MORE_REFS,
    freeze_lower_layers,
    load_model,
    own_progress,
    run_key,
    train_config,
    write_results,
)

STAGE1 = ("sft_ref", "SFT-ref (stage 1, human references)")
BASE = ("base", "base model (2-shot)")


@dataclass(frozen=True)
class MTSettings:
    """Everything that defines a translation demo run; ``FULL`` is what ``cpo demo --task mt`` runs. docs/mt.md has
    the protocol these settings were fixed in, before any test run."""

    src_lang: str = "de"
    tgt_lang: str = "en"
    validation: int = 100
    pref_pool: int = 400
    pref_prompts: int = 96
    heldout_sentences: int = 200
    roundtrip_sentences: int = 100
    shots: int = 2
    stage1_steps: int = 40
    steps: int = 12
    batch_size: int = 8
    learning_rate: float = 5e-5
    beta: float = 0.1
    cpo_alpha: float = 1.0
    simpo_gamma: float = 0.5
    trainable_layers: int = 6
    num_samples: int = 4
    temperature: float = 0.8
    max_new_tokens: int = 128
    arms: tuple[str, ...] = ("sft_chosen", "cpo", "arpo")
    judges: tuple[str, ...] = JUDGES
    seed: int = 0
    eval_split: str = "test"
    eval_batch_size: int = 32


FULL = MTSettings()
QUICK = replace(FULL, pref_prompts=12, heldout_sentences=24, roundtrip_sentences=12, stage1_steps=6, steps=3,
                batch_size=4, num_samples=2)


@dataclass(frozen=True)
class MTData:
    """The sentences of a run: the dev split, the worked examples of the few-shot prompts (from stage 1), and the
    held-out sentences measured on."""

    split: DevSplit
    shots: list[Sentence]
    heldout: list[Sentence]


def check_mt_settings(settings: MTSettings) -> None:
    """Refuse unknown arms and judges before any model loads (the message names the choices)."""
    unknown = [a for a in settings.arms if a not in ARMS]
    if unknown or not settings.arms:
        raise ValueError(f"Unknown demo arm(s) {unknown}; use some of {', '.join(ARMS)}.")
    bad = [j for j in settings.judges if j not in JUDGES]
    if bad or not settings.judges:
        raise ValueError(f"Unknown translation judge(s) {bad}; use some of {', '.join(JUDGES)}.")
    if settings.pref_prompts > settings.pref_pool:
        raise ValueError(f"pref_prompts={settings.pref_prompts} exceeds the pool of {settings.pref_pool}.")


def build_mt_data(settings: MTSettings) -> MTData:
    """The dev split (fixed: seed 0, so every seed shares stage 1 and the validation part), the worked examples (the
    first two stage-1 sentences of 5 to 12 words) and the held-out sentences (the first ``heldout_sentences`` of the
    test slice, or of the validation part)."""
    slices = load_slices()
    split = split_dev(slices["dev"], pref=settings.pref_pool, validation=settings.validation, seed=0)
    shots = [s for s in split.sft if 5 <= len(s.de.split()) <= 12][: settings.shots]
    heldout = (slices["test"] if settings.eval_split == "test" else split.validation)[: settings.heldout_sentences]
    return MTData(split, shots, heldout)


def preference_sentences(data: MTData, settings: MTSettings) -> list[Sentence]:
    """The seed's preference prompts: ``pref_prompts`` sentences of the preference pool, drawn with the seed, in
    file order."""
    picked = set(random.Random(f"prefs-{settings.seed}").sample(range(len(data.split.pref)), settings.pref_prompts))
    return [s for k, s in enumerate(data.split.pref) if k in picked]


def reference_rows(sentences: list[Sentence], settings: MTSettings) -> list[dict]:
    """Standard ALMA-prompt rows whose chosen completion is each reference; the rejected one (the next sentence's
    reference, a wrong translation) only feeds the logged metrics, SFT does not train on it."""
    from ..mt.prompts import alma_prompt

    return [{"prompt": alma_prompt(s.de, settings.src_lang, settings.tgt_lang), "chosen": " " + s.en,
             "rejected": " " + sentences[(k + 1) % len(sentences)].en} for k, s in enumerate(sentences)]


def train(label: str, model, tokenizer, loss_type: str, rows: list[dict], settings: MTSettings, run_dir: Path,
          progress: bool, **fields) -> float:
    """Train the top ``trainable_layers`` of ``model`` in place on ``rows``; returns the seconds it took."""
    from datasets import Dataset

    start = time.perf_counter()
    freeze_lower_layers(model, settings.trainable_layers)
    trainer = CPOTrainer(model=model, args=train_config(settings, loss_type, run_dir, progress, **fields),
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    own_progress(trainer, label, progress)
    trainer.train()
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer.state.save_to_json(str(run_dir / "trainer_state.json"))
    return time.perf_counter() - start


class Measurer:
    """Measures a model on the held-out sentences: corpus BLEU and chrF of its greedy translations, and the mean
    round-trip score (the base model's back-translation, chrF against the source) of the first
    ``roundtrip_sentences``."""

    def __init__(self, base, tokenizer, data: MTData, settings: MTSettings, progress: bool):
        self.tokenizer, self.data, self.settings, self.progress = tokenizer, data, settings, progress
        self.back_translate = model_back_translator(
            base, tokenizer, src_lang=settings.src_lang, tgt_lang=settings.tgt_lang,
            batch_size=settings.eval_batch_size, max_new_tokens=settings.max_new_tokens,
            shots=[(s.en, s.de) for s in data.shots])

    def __call__(self, model, shots: list[Sentence] = ()) -> dict:
        s, heldout = self.settings, self.data.heldout
        start = time.perf_counter()
        hyps = translate(model, self.tokenizer, [x.de for x in heldout], src_lang=s.src_lang, tgt_lang=s.tgt_lang,
                         batch_size=s.eval_batch_size, max_new_tokens=s.max_new_tokens, progress=self.progress,
                         shots=[(x.de, x.en) for x in shots])
        scores = corpus_scores(hyps, [x.en for x in heldout], s.tgt_lang)
        back = self.back_translate(hyps[: s.roundtrip_sentences])
        roundtrip = sentence_scores(back, [x.de for x in heldout[: s.roundtrip_sentences]], "chrf")
        return {"bleu": scores["bleu"], "chrf": scores["chrf"], "roundtrip": sum(roundtrip) / len(roundtrip),
                "hypotheses": hyps, "back_translations": back, "seconds": time.perf_counter() - start}


def run_mt_seed(stage1, tokenizer, data: MTData, measure: Measurer, settings: MTSettings, out_dir: Path,
                progress: bool) -> dict:
    """Candidates, both judges' pairs and every stage-2 run of one seed, each run from a copy of ``stage1``."""
    from ..files import write_jsonl

    out_dir.mkdir(parents=True, exist_ok=True)
    prefs = preference_sentences(data, settings)
    print(f"[seed {settings.seed}] candidates: {settings.num_samples} samples at temperature {settings.temperature} "
          f"for {len(prefs)} prompts, scored by {', '.join(settings.judges)}", flush=True)
    decoding = Decoding(max_new_tokens=settings.max_new_tokens, do_sample=True, num_samples=settings.num_samples,
                        temperature=settings.temperature, seed=settings.seed)
    raw = translation_candidates(stage1, tokenizer, [s.de for s in prefs], decoding, src_lang=settings.src_lang,
                                 tgt_lang=settings.tgt_lang, batch_size=settings.eval_batch_size, progress=progress)
    samples, duplicates = unique_candidates(raw)
    scored = score_prompts([s.id for s in prefs], [s.de for s in prefs], [s.en for s in prefs], samples,
                           measure.back_translate)
    write_jsonl(out_dir / "candidates.jsonl", [asdict(p) for p in scored])
    pairs, judges = {}, {}
    for name in settings.judges:
        pairs[name], judges[name] = judge_pairs(scored, name, settings.src_lang, settings.tgt_lang, settings.seed)
        if not pairs[name]:
            raise RuntimeError(f"Judge {name} made no preference pair: every prompt tied. Raise num_samples or "
                               "temperature.")
        write_jsonl(out_dir / f"prefs-{name}.jsonl", pairs[name])

    def run(key: str, label: str, loss: str, rows: list[dict], **fields) -> dict:
        print(f"[seed {settings.seed}] stage 2: {label} from SFT-ref ({len(rows)} rows, {settings.steps} steps x "
              f"{settings.batch_size})", flush=True)
        model = copy.deepcopy(stage1)
        seconds = train(label, model, tokenizer, loss, rows, settings, out_dir / key.replace("@", "-"), progress,
                        **fields)
        return {**measure(model), "train_seconds": seconds}

    runs = {MORE_REFS[0]: run(MORE_REFS[0], MORE_REFS[1], "sft", reference_rows(prefs, settings))}
    for name in settings.judges:
        for arm in settings.arms:
            label, loss, fields = ARMS[arm]
            runs[run_key(arm, name)] = run(run_key(arm, name), f"{label.split(' (')[0]} [{name}]", loss, pairs[name],
                                           **fields)
    return {"seed": settings.seed, "pref_ids": [s.id for s in prefs], "duplicates": duplicates, "judges": judges,
            "runs": runs}


def run_mt_demo(settings: MTSettings, out_dir: Path, seeds: int = 1, progress: bool = True,
                gguf_path: Path | None = None) -> dict:
    """The whole recipe: load the model, measure it few-shot, stage 1 once, then stage 2 for ``seeds`` seeds
    (``settings.seed``, +1, ...). Writes ``results.json`` after stage 1 and after every seed (a stopped run keeps what
    it finished), returns it."""
    from .gemma import gemma_gguf_path

    check_mt_settings(settings)
    path = Path(gguf_path) if gguf_path is not None else gemma_gguf_path()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_mt_data(settings)
    print("Loading the model (dequantising the GGUF into a plain float32 model)", flush=True)
    base, tokenizer, name = load_model(path)
    results = {"task": "mt", "model": name, "settings": asdict(settings), "threads": torch.get_num_threads(),
               "load_seconds": time.perf_counter() - started, "heldout_ids": [s.id for s in data.heldout],
               "shots": [asdict(s) for s in data.shots], "seeds": []}
    measure = Measurer(base, tokenizer, data, settings, progress)
    print(f"Measuring the base model ({len(data.shots)}-shot) on {len(data.heldout)} {settings.eval_split} "
          "sentences", flush=True)
    results["base"] = measure(base, data.shots)
    print(f"Stage 1: SFT on the references of {len(data.split.sft)} WMT'21 sentences ({settings.stage1_steps} steps x "
          f"{settings.batch_size})", flush=True)
    stage1 = copy.deepcopy(base)
    seconds = train(STAGE1[1].split(" (")[0], stage1, tokenizer, "sft", reference_rows(data.split.sft, settings),
                    replace(settings, steps=settings.stage1_steps), out_dir / STAGE1[0], progress)
    results["stage1"] = {**measure(stage1), "train_seconds": seconds}
    write_results(results, out_dir)
    for seed in range(settings.seed, settings.seed + seeds):
        results["seeds"].append(run_mt_seed(stage1, tokenizer, data, measure, replace(settings, seed=seed),
                                            out_dir / f"seed{seed}", progress))
        results["total_seconds"] = time.perf_counter() - started
        write_results(results, out_dir)
    return results
