"""`cpo eval`: preference metrics on held-out pairs (no generation), or translation quality (BLEU and chrF).

- ``preference``: :class:`cpo.CPOTrainer` evaluates the pairs: ``rewards/accuracies`` (how often the chosen
  completion gets the higher reward), ``rewards/margins``, ``logps/chosen`` and ``logps/rejected``, losses.
- ``translate``: generate with :mod:`cpo.generate` (or take an existing hypothesis file) and score the corpus with
  sacrebleu, exactly as ``sacrebleu.corpus_bleu(hyps, [refs])`` and ``corpus_chrf`` do.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import UsageError
from .mt import check_aligned, read_segments, write_lines

logger = logging.getLogger("cpo")

LOSS_KEYS = ("beta", "loss_type", "cpo_alpha", "simpo_gamma", "alpha", "label_smoothing", "max_length",
             "max_completion_length")


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], tgt_lang: str | None = None) -> dict:
    """Corpus BLEU and chrF (sacrebleu, 0-100) with their signatures. BLEU's tokenizer follows ``tgt_lang`` as
    sacrebleu chooses it (``zh`` for Chinese, ``13a`` otherwise).

    Equals ``sacrebleu.corpus_bleu(hypotheses, [references]).score`` and ``corpus_chrf`` for English targets.
    """
    from sacrebleu.metrics import BLEU, CHRF

    check_aligned([("hypotheses", hypotheses), ("references", references)])
    try:
        bleu = BLEU(trg_lang=tgt_lang or "")
    except Exception as err:  # e.g. ja needs mecab
        raise UsageError(f"sacrebleu cannot score BLEU for target language {tgt_lang!r}: {err}") from err
    chrf = CHRF()
    b, c = bleu.corpus_score(list(hypotheses), [list(references)]), chrf.corpus_score(list(hypotheses),
                                                                                         [list(references)])
    return {"bleu": b.score, "chrf": c.score, "bleu_detail": str(b), "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature())}


def _write_json(path: str | Path, data: dict) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return p


def _load(args):
    from .loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(args.model_name_or_path, dtype=args.dtype,
                                                trust_remote_code=args.trust_remote_code)
    import torch

    if torch.cuda.is_available() and not args.use_cpu:
        model = model.to("cuda")
    return model, tokenizer


def run_translate(args) -> int:
    """``cpo eval --mode translate``: generate (with a model) or read (without) hypotheses, then score them."""
    generate = args.model_name_or_path is not None
    if args.ref is None:
        raise UsageError("--mode translate needs --ref, the reference translations.")
    if args.hypotheses is None:
        raise UsageError("Give --hypotheses: the file to write the translations to (with --model_name_or_path), or "
                         "the translations to score (without it).")
    refs = read_segments(args.ref, field=args.ref_field, lang=args.tgt_lang, what="reference")
    if args.limit and args.limit < len(refs):
        logger.info(f"cpo eval: --limit {args.limit}: using the first {args.limit} of {len(refs)} segments")
    refs = refs[: args.limit] if args.limit else refs
    if generate:
        if args.src is None or args.src_lang is None or args.tgt_lang is None:
            raise UsageError("Translating needs --src, --src_lang and --tgt_lang (for the prompt).")
        sources = read_segments(args.src, field=args.src_field, lang=args.src_lang, what="source")
        sources = sources[: args.limit] if args.limit else sources
        check_aligned([(f"source {args.src}", sources), (f"reference {args.ref}", refs)])
        from .generate import translate

        model, tokenizer = _load(args)
        hyps = translate(model, tokenizer, sources, src_lang=args.src_lang, tgt_lang=args.tgt_lang,
                         template=args.template, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                         num_beams=args.num_beams)
        flattened = write_lines(args.hypotheses, hyps)
        if flattened:
            logger.warning(f"cpo eval: {flattened} hypotheses held a newline, written as a space to keep one a line.")
    else:
        hyps = read_segments(args.hypotheses, field=args.hyp_field, lang=args.tgt_lang, what="hypotheses")
        hyps = hyps[: args.limit] if args.limit else hyps
    check_aligned([(f"hypotheses {args.hypotheses}", hyps), (f"reference {args.ref}", refs)])
    result = corpus_scores(hyps, refs, args.tgt_lang)
    result.update(segments=len(hyps), empty_hypotheses=sum(1 for h in hyps if not h.strip()),
                  hypotheses=str(args.hypotheses), references=str(args.ref), model=args.model_name_or_path,
                  template=args.template if generate else None, src_lang=args.src_lang, tgt_lang=args.tgt_lang)
    out = _write_json(args.output_json or f"{args.hypotheses}.scores.json", result)
    print(f"BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  ({len(hyps)} segments, "
          f"{result['empty_hypotheses']} empty hypotheses)\n{result['bleu_detail']}\nscores written to {out}")
    return 0


def training_settings(model_path: str) -> tuple[dict, Path | None]:
    """The loss settings that ``cpo train`` saved next to the model (``cpo_train_config.yaml``), if any."""
    from .cli_train import CONFIG_FILE_NAME

    p = Path(model_path) / CONFIG_FILE_NAME
    if not p.is_file():
        return {}, None
    import yaml

    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    return {k: data[k] for k in LOSS_KEYS if k in data}, p


def preference_metrics(model, tokenizer, dataset, *, batch_size: int = 8, use_cpu: bool = False,
                       **settings) -> dict[str, float]:
    """CPOTrainer's evaluation metrics on a preference dataset, keys without the ``eval_`` prefix.

    Args:
        use_cpu: evaluate on the CPU in fp32; otherwise on the accelerator, in bf16 where CPOConfig turns it on.
        settings: CPOConfig fields that define the rewards (``beta``, ``loss_type``, ``max_length``, ...).
    """
    from .config import CPOConfig
    from .trainer import CPOTrainer

    with tempfile.TemporaryDirectory(prefix="cpo-eval-") as tmp:
        cfg = CPOConfig(output_dir=tmp, per_device_eval_batch_size=batch_size, report_to="none", use_cpu=use_cpu,
                        **settings)
        kwargs = {"model": model, "args": cfg, "processing_class": tokenizer, "eval_dataset": dataset}
        try:
            trainer = CPOTrainer(**kwargs)
        except ValueError as err:  # rows are validated here, with the row and the field named
            raise UsageError(str(err)) from None
        metrics = trainer.evaluate()
    return {k.removeprefix("eval_"): v for k, v in metrics.items()}


def run_preference(args) -> int:
    """``cpo eval --mode preference``: reward accuracy, margins and log-probs of held-out pairs."""
    from .loading import load_dataset_dict, select_split

    if args.dataset_name is None:
        raise UsageError("--mode preference needs --dataset_name: a preference dataset (e.g. from `cpo prefs`).")
    splits = load_dataset_dict(args.dataset_name, args.dataset_config)
    split = args.dataset_split
    if split is None:
        split = "test" if "test" in splits else (next(iter(splits)) if len(splits) == 1 else None)
        if split is None:
            raise UsageError(f"Which split? The dataset has {', '.join(splits)}: give --dataset_split.")
        logger.info(f"cpo eval: using split {split!r}")
    dataset = select_split(splits, split, f"The dataset {args.dataset_name!r}")
    saved, saved_file = training_settings(args.model_name_or_path)
    given = {k: getattr(args, k) for k in LOSS_KEYS if getattr(args, k, None) is not None}
    settings = saved | given
    if saved_file:
        logger.info(f"cpo eval: loss settings from {saved_file}: {saved} (flags override them)")
    model, tokenizer = _load(args)
    metrics = preference_metrics(model, tokenizer, dataset, batch_size=args.batch_size, use_cpu=args.use_cpu,
                                 **settings)
    result = {"model": args.model_name_or_path, "dataset": args.dataset_name, "split": split, "pairs": len(dataset),
              "settings": settings, "metrics": metrics}
    shown = {k: v for k, v in metrics.items() if "/" in k or k.endswith("loss")}  # not runtime, epoch, ...
    width = max(len(k) for k in shown)
    print(f"{len(dataset)} pairs of {args.dataset_name} [{split}]")
    print("\n".join(f"  {k:<{width}}  {v:.4f}" for k, v in sorted(shown.items())))
    if args.output_json:
        print(f"written to {_write_json(args.output_json, result)}")
    return 0


def run(args) -> int:
    """Entry point of ``cpo eval`` (after the parser's checks)."""
    return run_preference(args) if args.mode == "preference" else run_translate(args)
