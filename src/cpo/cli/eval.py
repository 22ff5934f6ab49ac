"""`cpo eval`: preference metrics on held-out pairs (no generation), or translation quality (BLEU and chrF).

- ``preference``: :class:`cpo.CPOTrainer` evaluates the pairs: ``rewards/accuracies`` (how often the chosen
  completion gets the higher reward), ``rewards/margins``, ``logps/chosen`` and ``logps/rejected``, losses.
- ``translate``: translate with :func:`cpo.mt.translate.translate` (or take an existing hypothesis file) and score
  the corpus with sacrebleu, exactly as ``sacrebleu.corpus_bleu(hyps, [refs])`` and ``corpus_chrf`` do.

Both modes print a summary and, with ``--output FILE``, write the same JSON layout atomically: ``mode``, ``model``,
``inputs`` (files, split, number of pairs or segments), ``settings`` and ``metrics``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from ..errors import UsageError
from ..files import check_aligned, write_lines
from ..mt.scores import corpus_scores
from ..mt.segments import read_segments
from .common import (
    add_model_arguments,
    add_output_argument,
    add_progress_argument,
    add_translation_arguments,
    number,
    subcommand_parser,
    write_json,
)

logger = logging.getLogger("cpo")

# Besides the loss settings (cpo.losses.LossSettings), the CPOConfig fields that decide what a pair's rewards are:
# read from the trained model's cpo_train_config.yaml, overridable by the flags of the same names.
TOKEN_KEYS = ("max_length", "max_completion_length")


def loss_keys() -> tuple[str, ...]:
    from ..loss_settings import loss_setting_names

    return (*loss_setting_names(), *TOKEN_KEYS)


def _flag_value(kind: str):
    """The argparse type of a loss setting declared as ``kind`` ("float", "str", "bool")."""
    def to_bool(text: str) -> bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")

    return {"float": float, "bool": to_bool}.get(kind, str)  # values are checked by CPOConfig (check_settings)
EXAMPLES = """\
examples (run is the output_dir of `cpo train`; the other files are your own):
  # how often the trained model prefers the chosen translation of held-out pairs (no generation)
  cpo eval --mode preference --model_name_or_path run --dataset_name prefs.jsonl --dataset_split 'train[1800:]' \\
      --output run/eval_preference.json
  # translate with the ALMA prompt, greedy, and score BLEU/chrF
  cpo eval --mode translate --model_name_or_path run --src test.de-en.de --ref test.de-en.en \\
      --src_lang de --tgt_lang en --hypotheses run/hyp.en --output run/eval_translate.json
  # score an existing hypothesis file (another system's translations), without a model
  cpo eval --mode translate --hypotheses other_system.en --ref test.de-en.en --tgt_lang en
  # JSON input ({"translation": {"de": ..., "en": ...}}): the same file gives sources and references
  cpo eval --mode translate --model_name_or_path run --src test.de-en.json --ref test.de-en.json \\
      --src_lang de --tgt_lang en --hypotheses hyp.en --template chat
"""


def build_parser():
    p = subcommand_parser("eval", "Evaluate a model: preference metrics (no generation) or translation quality.",
                          EXAMPLES)
    p.add_argument("--mode", required=True, choices=["preference", "translate"],
                   help="preference: reward accuracy and margins of held-out chosen/rejected pairs (no generation); "
                   "translate: BLEU and chrF of translations against references")
    p.add_argument("--model_name_or_path", help="model folder, Hub name or .gguf file (translate: omit it to score "
                   "an existing --hypotheses file)")
    add_model_arguments(p)
    p.add_argument("--batch_size", type=number(int, 1), default=8, help="pairs or sentences per batch")
    add_output_argument(p, "JSON file to write the results to (both modes: mode, model, inputs, settings, metrics); "
                        "without it they are only printed")
    add_progress_argument(p)
    g = p.add_argument_group("--mode preference")
    g.add_argument("--dataset_name", help="preference data: .json/.jsonl/.csv/.parquet file, folder or Hub name")
    g.add_argument("--dataset_config", help="configuration of a Hub dataset")
    g.add_argument("--dataset_split", help="split, may be sliced ('train[1800:]'); default: test, or the only one")
    from ..loss_settings import LossSettings

    for f in fields(LossSettings):  # every loss setting, with the help it is declared with
        g.add_argument(f"--{f.name}", type=_flag_value(f.type), help=f"{f.metadata['help']} Default: the value in "
                       f"the model's cpo_train_config.yaml, else {f.default}.")
    g.add_argument("--max_length", type=int, help="tokens of prompt + completion; default as the loss settings, "
                   "else 1024")
    g.add_argument("--max_completion_length", type=int, help="tokens of a completion; default as the loss settings")
    g = p.add_argument_group("--mode translate")
    add_translation_arguments(g, reference="reference translations")
    g.add_argument("--hypotheses", help="translations: written when a model is given, read (and scored) otherwise")
    g.add_argument("--hyp_field", help="JSON field of a hypothesis file")
    g.add_argument("--max_new_tokens", type=number(int, 1), default=256, help="most tokens generated per sentence")
    g.add_argument("--num_beams", type=number(int, 1), default=1, help="beam size; 1 is greedy")
    g.add_argument("--limit", type=number(int, 1), help="use only the first N segments")
    return p


_MODE_ONLY = {
    "preference": ("dataset_name", "dataset_config", "dataset_split", *TOKEN_KEYS),
    "translate": ("src", "ref", "hypotheses", "src_lang", "tgt_lang", "src_field", "ref_field", "hyp_field",
                  "template", "max_new_tokens", "num_beams", "limit"),
}


def parse(argv: Sequence[str]):
    """Parse ``cpo eval`` arguments and check that they belong to the chosen ``--mode``."""
    args = build_parser().parse_args(list(argv))
    other = "translate" if args.mode == "preference" else "preference"
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    wrong = sorted(given & set(_MODE_ONLY[other] + (loss_keys() if other == "preference" else ())))
    if wrong:
        raise UsageError(f"--{', --'.join(wrong)} belong(s) to --mode {other}, not --mode {args.mode}.")
    if args.mode == "preference" and args.model_name_or_path is None:
        raise UsageError("--mode preference needs --model_name_or_path.")
    if args.mode == "preference":
        check_settings(settings_of(args)[0])
    return args


def settings_of(args) -> tuple[dict, Path | None]:
    """The loss and token settings of ``--mode preference``: the model's saved ones, then the flags; and the file
    they were read from."""
    saved, saved_file = training_settings(args.model_name_or_path)
    given = {k: getattr(args, k) for k in loss_keys() if getattr(args, k, None) is not None}
    return saved | given, saved_file


def check_settings(settings: dict) -> None:
    """Refuse, before the model loads, settings that CPOConfig refuses (its checks are the one place of the rules)."""
    from ..config import CPOConfig

    with tempfile.TemporaryDirectory(prefix="cpo-eval-") as tmp:
        try:
            CPOConfig(output_dir=tmp, report_to="none", use_cpu=True, **settings)
        except (TypeError, ValueError) as err:
            raise UsageError(f"Invalid loss settings: {err}") from None


def _load(args):
    from .loading import load_for_inference

    return load_for_inference(args.model_name_or_path, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                              use_cpu=args.use_cpu)


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
        from ..mt.translate import translate

        model, tokenizer = _load(args)
        hyps = translate(model, tokenizer, sources, src_lang=args.src_lang, tgt_lang=args.tgt_lang,
                         template=args.template, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                         num_beams=args.num_beams, progress=not args.disable_tqdm)
        flattened = write_lines(args.hypotheses, hyps)
        if flattened:
            logger.warning(f"cpo eval: {flattened} hypotheses held a newline, written as a space to keep one a line.")
    else:
        hyps = read_segments(args.hypotheses, field=args.hyp_field, lang=args.tgt_lang, what="hypotheses")
        hyps = hyps[: args.limit] if args.limit else hyps
    check_aligned([(f"hypotheses {args.hypotheses}", hyps), (f"reference {args.ref}", refs)])
    metrics = corpus_scores(hyps, refs, args.tgt_lang)
    metrics["empty_hypotheses"] = sum(1 for h in hyps if not h.strip())
    inputs = {"sources": args.src if generate else None, "hypotheses": str(args.hypotheses),
              "references": str(args.ref), "segments": len(hyps)}
    settings = {"src_lang": args.src_lang, "tgt_lang": args.tgt_lang}
    if generate:
        settings |= {"template": args.template, "num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens}
    print(f"BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  ({len(hyps)} segments, "
          f"{metrics['empty_hypotheses']} empty hypotheses)\n{metrics['bleu_detail']}")
    _write_result(args, inputs, settings, metrics)
    return 0


def _write_result(args, inputs: dict, settings: dict, metrics: dict) -> None:
    """The one JSON layout of both modes, written (atomically) to ``--output`` when it is given."""
    if args.output:
        result = {"mode": args.mode, "model": args.model_name_or_path, "inputs": inputs, "settings": settings,
                  "metrics": metrics}
        print(f"written to {write_json(args.output, result)}")


def training_settings(model_path: str) -> tuple[dict, Path | None]:
    """The loss settings that ``cpo train`` saved next to the model (``cpo_train_config.yaml``), if any."""
    from .train import CONFIG_FILE_NAME

    p = Path(model_path) / CONFIG_FILE_NAME
    if not p.is_file():
        return {}, None
    import yaml

    from ..files import read_text

    try:
        data = yaml.safe_load(read_text(p, "training config")) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"The training config file {str(p)!r} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"The training config file {str(p)!r} is not a mapping of settings.")
    return {k: data[k] for k in loss_keys() if k in data}, p


def preference_metrics(model, tokenizer, dataset, *, batch_size: int = 8, use_cpu: bool = False,
                       disable_tqdm: bool = False, **settings) -> dict[str, float]:
    """CPOTrainer's evaluation metrics on a preference dataset, keys without the ``eval_`` prefix.

    Args:
        use_cpu: evaluate on the CPU in fp32; otherwise on the accelerator, in bf16 where CPOConfig turns it on.
        disable_tqdm: no progress bar.
        settings: CPOConfig fields that define the rewards (``beta``, ``loss_type``, ``max_length``, ...).
    """
    from ..config import CPOConfig
    from ..trainer import CPOTrainer

    with tempfile.TemporaryDirectory(prefix="cpo-eval-") as tmp:
        cfg = CPOConfig(output_dir=tmp, per_device_eval_batch_size=batch_size, report_to="none", use_cpu=use_cpu,
                        disable_tqdm=disable_tqdm, **settings)
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
    settings, saved_file = settings_of(args)
    if saved_file:
        logger.info(f"cpo eval: loss settings from {saved_file} (flags override them): {settings}")
    model, tokenizer = _load(args)
    metrics = preference_metrics(model, tokenizer, dataset, batch_size=args.batch_size, use_cpu=args.use_cpu,
                                 disable_tqdm=args.disable_tqdm, **settings)
    shown = {k: v for k, v in metrics.items() if "/" in k or k.endswith("loss")}  # not runtime, epoch, ...
    width = max(len(k) for k in shown)
    print(f"{len(dataset)} pairs of {args.dataset_name} [{split}]")
    print("\n".join(f"  {k:<{width}}  {v:.4f}" for k, v in sorted(shown.items())))
    inputs = {"dataset": args.dataset_name, "dataset_config": args.dataset_config, "split": split,
              "pairs": len(dataset)}
    _write_result(args, inputs, settings, metrics)
    return 0


def run(args) -> int:
    """Entry point of ``cpo eval`` (after :func:`parse`'s checks)."""
    return run_preference(args) if args.mode == "preference" else run_translate(args)
