"""`cpo eval`: preference metrics on held-out pairs (no generation), or translation quality (BLEU and chrF).

- ``preference``: :class:`cpo.CPOTrainer` evaluates the pairs: ``rewards/accuracies`` (how often the chosen
  completion gets the higher reward), ``rewards/margins``, ``logps/chosen`` and ``logps/rejected``, losses.
- ``translate``: translate with :func:`cpo.mt.translate.translate` (or take an existing hypothesis file) and score
  the corpus with
  sacrebleu, exactly as ``sacrebleu.corpus_bleu(hyps, [refs])`` and ``corpus_chrf`` do.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from ..mt.scores import corpus_scores
from ..mt.segments import check_aligned, read_segments, write_lines
from .common import add_model_arguments, add_translation_arguments, subcommand_parser, write_json

logger = logging.getLogger("cpo")

# The CPOConfig fields that define rewards and losses: read from the trained model's cpo_train_config.yaml,
# overridable by the flags of the same names.
LOSS_KEYS = ("beta", "loss_type", "cpo_alpha", "simpo_gamma", "alpha", "label_smoothing", "max_length",
             "max_completion_length")
EXAMPLES = """\
examples:
  # how often the trained model prefers the chosen translation of held-out pairs (no generation)
  cpo eval --mode preference --model_name_or_path run --dataset_name prefs.jsonl --dataset_split 'train[1800:]'
  # translate with the ALMA prompt, greedy, and score BLEU/chrF
  cpo eval --mode translate --model_name_or_path run --src test.de-en.de --ref test.de-en.en \\
      --src_lang de --tgt_lang en --hypotheses run/hyp.en --output_json run/scores.json
  # score an existing hypothesis file, without a model
  cpo eval --mode translate --hypotheses GPT-4/test.de-en.en --ref test.de-en.en --tgt_lang en
  # JSON input ({"translation": {"de": ..., "en": ...}}): the same file gives sources and references
  cpo eval --mode translate --model_name_or_path run --src test.de-en.json --ref test.de-en.json \\
      --src_lang de --tgt_lang en --hypotheses hyp.en --template chat
"""


def build_parser():
    p = subcommand_parser("eval", "Evaluate a model: preference metrics (no generation) or translation quality.",
                          EXAMPLES)
    p.add_argument("--mode", required=True, choices=["preference", "translate"])
    p.add_argument("--model_name_or_path", help="model folder, Hub name or .gguf file (translate: omit it to score "
                   "an existing --hypotheses file)")
    add_model_arguments(p)
    p.add_argument("--batch_size", type=int, default=8, help="pairs or sentences per batch")
    p.add_argument("--output_json", help="where to write the results (translate: default <hypotheses>.scores.json)")
    g = p.add_argument_group("--mode preference")
    g.add_argument("--dataset_name", help="preference data: .json/.jsonl/.csv/.parquet file, folder or Hub name")
    g.add_argument("--dataset_config", help="configuration of a Hub dataset")
    g.add_argument("--dataset_split", help="split, may be sliced ('train[1800:]'); default: test, or the only one")
    g.add_argument("--beta", type=float, help="reward scale; default: the model's cpo_train_config.yaml, else 0.1")
    g.add_argument("--loss_type", help="sigmoid, hinge, ipo, simpo, ...; default as --beta")
    g.add_argument("--cpo_alpha", type=float, help="NLL weight in the reported loss; default as --beta")
    g.add_argument("--simpo_gamma", type=float, help="SimPO margin; default as --beta")
    g.add_argument("--alpha", type=float, help="AlphaPO reward shape; default as --beta")
    g.add_argument("--label_smoothing", type=float, help="default as --beta")
    g.add_argument("--max_length", type=int, help="tokens of prompt + completion; default as --beta, else 1024")
    g.add_argument("--max_completion_length", type=int, help="tokens of a completion; default as --beta")
    g = p.add_argument_group("--mode translate")
    add_translation_arguments(g, reference="reference translations")
    g.add_argument("--hypotheses", help="translations: written when a model is given, read (and scored) otherwise")
    g.add_argument("--hyp_field", help="JSON field of a hypothesis file")
    g.add_argument("--max_new_tokens", type=int, default=256, help="most tokens generated per sentence")
    g.add_argument("--num_beams", type=int, default=1, help="beam size; 1 is greedy")
    g.add_argument("--limit", type=int, help="use only the first N segments")
    return p


_MODE_ONLY = {
    "preference": ("dataset_name", "dataset_config", "dataset_split", *LOSS_KEYS),
    "translate": ("src", "ref", "hypotheses", "src_lang", "tgt_lang", "src_field", "ref_field", "hyp_field",
                  "template", "max_new_tokens", "num_beams", "limit"),
}


def parse(argv: Sequence[str]):
    """Parse ``cpo eval`` arguments and check that they belong to the chosen ``--mode``."""
    args = build_parser().parse_args(list(argv))
    other = "translate" if args.mode == "preference" else "preference"
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    wrong = sorted(given & set(_MODE_ONLY[other]))
    if wrong:
        raise UsageError(f"--{', --'.join(wrong)} belong(s) to --mode {other}, not --mode {args.mode}.")
    if args.mode == "preference" and args.model_name_or_path is None:
        raise UsageError("--mode preference needs --model_name_or_path.")
    for name in ("batch_size", "max_new_tokens", "num_beams", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be a positive integer, got {value}.")
    return args


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
    out = write_json(args.output_json or f"{args.hypotheses}.scores.json", result)
    print(f"BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  ({len(hyps)} segments, "
          f"{result['empty_hypotheses']} empty hypotheses)\n{result['bleu_detail']}\nscores written to {out}")
    return 0


def training_settings(model_path: str) -> tuple[dict, Path | None]:
    """The loss settings that ``cpo train`` saved next to the model (``cpo_train_config.yaml``), if any."""
    from .train import CONFIG_FILE_NAME

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
    from ..config import CPOConfig
    from ..trainer import CPOTrainer

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
        print(f"written to {write_json(args.output_json, result)}")
    return 0


def run(args) -> int:
    """Entry point of ``cpo eval`` (after :func:`parse`'s checks)."""
    return run_preference(args) if args.mode == "preference" else run_translate(args)
