"""The `cpo` command: ``train``, ``eval``, ``plot``, ``prefs`` and ``demo``.

Building the parser imports nothing heavy: torch, transformers, datasets, matplotlib and sacrebleu are imported by
the subcommand that needs them, so ``cpo --help`` answers at once. ``train`` has its own parser (every CPOConfig
field, see :mod:`cpo.cli_train`), and ``demo`` is :mod:`cpo.demo`'s; both are handed their arguments as they are.
A user's mistake (:class:`cpo.errors.UsageError`) prints one message and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .errors import UsageError

logger = logging.getLogger("cpo")

DESCRIPTION = """\
Preference-train language models with Contrastive Preference Optimization (arXiv 2401.08417).

the loop, on WMT'22 de-en:
  cpo prefs --src test.de-en.de --ref test.de-en.en --system GPT4.en --system ALMA.en \\
      --src_lang de --tgt_lang en --output prefs.jsonl                  # best vs worst translation pairs
  cpo train --model_name_or_path MODEL --dataset_name prefs.jsonl --output_dir run
  cpo eval --mode preference --model_name_or_path run --dataset_name prefs.jsonl
  cpo eval --mode translate --model_name_or_path run --src test.de-en.de --ref test.de-en.en \\
      --src_lang de --tgt_lang en --hypotheses run/hyp.en
  cpo plot run

`cpo SUBCOMMAND --help` shows each subcommand's options and examples.
"""

EVAL_EXAMPLES = """\
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

PREFS_EXAMPLES = """\
examples:
  # WMT'22 de-en: reference, GPT-4 and ALMA-13B-LoRA scored by chrF against the reference
  D=../shared/data/wmt22
  cpo prefs --src $D/wmt-testset/deen/test.de-en.de --ref $D/wmt-testset/deen/test.de-en.en \\
      --system $D/GPT-4-1106-preview/deen/test.de-en.en --system $D/ALMA-13B-LoRA/deen/test.de-en.en \\
      --src_lang de --tgt_lang en --output prefs.jsonl
  # system outputs only, conversational rows, pairs at least 5 chrF apart
  cpo prefs ... --exclude_reference --format conversational --threshold 5 --output prefs.jsonl
  # your own scores (one number a line per candidate; lower is better here)
  cpo prefs --src src.de --ref ref.en --system A=a.en --system B=b.en --metric given --lower_is_better \\
      --scores reference=ref.err --scores A=a.err --scores B=b.err --src_lang de --tgt_lang en --output p.jsonl
  # human MQM judgements (Google's WMT MQM tables): best vs worst of 14 systems per segment
  cpo prefs --mqm ../shared/data/wmt-mqm/ted/ende/mqm_ted_ende.tsv --src_lang en --tgt_lang de --output mqm.jsonl

The reference as a candidate: with --metric chrf or bleu the reference scores 100 against itself, so it is always
*chosen* and each pair is "reference over the worst system" (the CPO paper's triplets include the reference too, but
score it with reference-free metrics, so there it can lose). --exclude_reference pairs the systems' outputs only,
still scored against the reference.
"""

PLOT_EXAMPLES = """\
examples:
  cpo plot runs/cpo                          # writes runs/cpo/training_curves.png
  cpo plot runs/cpo/checkpoint-200 -o ckpt200.png
  cpo plot runs/beta0.1 runs/beta0.5 --labels 'beta 0.1' 'beta 0.5' -o compare.png
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="preference metrics on held-out pairs, or BLEU/chrF of translations",
                       description="Evaluate a model: preference metrics (no generation) or translation quality.",
                       epilog=EVAL_EXAMPLES, formatter_class=_Formatter, allow_abbrev=False)
    p.add_argument("--mode", required=True, choices=["preference", "translate"])
    p.add_argument("--model_name_or_path", help="model folder, Hub name or .gguf file (translate: omit it to score "
                   "an existing --hypotheses file)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="weights dtype")
    p.add_argument("--trust_remote_code", action="store_true", help="allow models that ship their own code")
    p.add_argument("--use_cpu", action="store_true", help="run on the CPU even when a GPU is available (fp32)")
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
    g.add_argument("--src", help="source sentences: text file (one a line) or .json/.jsonl")
    g.add_argument("--ref", help="reference translations, same formats (may be the same JSON file as --src)")
    g.add_argument("--hypotheses", help="translations: written when a model is given, read (and scored) otherwise")
    g.add_argument("--src_lang", help="source language code, e.g. de (prompt and JSON field)")
    g.add_argument("--tgt_lang", help="target language code, e.g. en (prompt, JSON field, BLEU tokenizer)")
    g.add_argument("--src_field", help="JSON field of the source (default translation.<src_lang> or <src_lang>)")
    g.add_argument("--ref_field", help="JSON field of the reference (default translation.<tgt_lang> or <tgt_lang>)")
    g.add_argument("--hyp_field", help="JSON field of a hypothesis file")
    g.add_argument("--template", choices=["alma", "chat"], default="alma",
                   help="alma: 'Translate this from German to English:\\nGerman: ...\\nEnglish:' (cut at the first "
                   "newline); chat: the same text as a user turn in the tokenizer's chat template")
    g.add_argument("--max_new_tokens", type=int, default=256, help="most tokens generated per sentence")
    g.add_argument("--num_beams", type=int, default=1, help="beam size; 1 is greedy")
    g.add_argument("--limit", type=int, help="use only the first N segments")


_MODE_ONLY = {
    "preference": ("dataset_name", "dataset_config", "dataset_split", "beta", "loss_type", "cpo_alpha", "simpo_gamma",
                   "alpha", "label_smoothing", "max_length", "max_completion_length"),
    "translate": ("src", "ref", "hypotheses", "src_lang", "tgt_lang", "src_field", "ref_field", "hyp_field",
                  "max_new_tokens", "num_beams", "limit"),
}


def _check_eval(args, argv: Sequence[str]) -> None:
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


def _add_prefs(sub) -> None:
    p = sub.add_parser("prefs", help="build preference pairs from scored translations (best vs worst)",
                       description="Build CPO preference pairs from candidate translations, as the CPO paper did "
                       "(arXiv 2401.08417, section 3): the best-scored candidate is chosen, the worst rejected.",
                       epilog=PREFS_EXAMPLES, formatter_class=_Formatter, allow_abbrev=False)
    p.add_argument("--output", required=True, help="JSONL file to write (trains directly with `cpo train`)")
    p.add_argument("--src_lang", required=True, help="source language code, e.g. de")
    p.add_argument("--tgt_lang", required=True, help="target language code, e.g. en")
    g = p.add_argument_group("line-aligned inputs")
    g.add_argument("--src", help="source sentences: text file (one a line) or .json/.jsonl")
    g.add_argument("--ref", help="reference translations, line-aligned with --src")
    g.add_argument("--system", action="append", default=[], metavar="[NAME=]FILE",
                   help="a system's translations, line-aligned (repeat for each system); the name defaults to the "
                   "folder that differs between the files (wmt22/<SYSTEM>/...)")
    g.add_argument("--src_field", help="JSON field of the source (default translation.<src_lang>)")
    g.add_argument("--ref_field", help="JSON field of the reference (default translation.<tgt_lang>)")
    g.add_argument("--metric", choices=["chrf", "bleu", "given"], default=None,
                   help="chrf / bleu: sentence score against the reference (default chrf); given: --scores files")
    g.add_argument("--scores", action="append", default=[], metavar="NAME=FILE",
                   help="with --metric given: one score a line for candidate NAME (the reference is NAME "
                   "'reference'); repeat for every candidate")
    g.add_argument("--lower_is_better", action="store_true", help="with --metric given: lower scores are better "
                   "(e.g. error counts); default: higher is better")
    g.add_argument("--exclude_reference", action="store_true",
                   help="leave the reference out of the candidates (see below)")
    g.add_argument("--reference_name", default="reference", help="the reference's name in the output rows")
    g = p.add_argument_group("human MQM judgements")
    g.add_argument("--mqm", metavar="TSV", help="Google MQM table (mqm_ted_ende.tsv): the candidates are its systems, "
                   "scored by the human MQM average (negated error points: higher is better); --exclude_reference "
                   "leaves out the human references (ref*)")
    g.add_argument("--mqm_scores", metavar="FILE", help="its avg_seg_scores file (default: next to the TSV)")
    g = p.add_argument_group("pairs and output")
    g.add_argument("--threshold", type=float, default=0.0,
                   help="skip pairs whose score gap is smaller than this (ties are always skipped)")
    g.add_argument("--format", choices=["standard", "conversational"], default="standard",
                   help="standard: prompt/chosen/rejected strings with the ALMA prompt; conversational: a user turn "
                   "and assistant turns (for chat templates)")
    g.add_argument("--completion_prefix", default=" ", help="standard format: text before each completion, so that "
                   "prompt + completion reads 'English: <translation>'")
    g.add_argument("--seed", type=int, default=0, help="breaks ties between equally scored candidates at random")


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw training curves of one or several runs",
                       description="Draw loss, nll_loss, rewards/margins, rewards/accuracies and rewards/chosen + "
                       "rewards/rejected against step (train solid, eval dashed) from trainer_state.json of a "
                       "finished or running job, or a checkpoint folder. Several runs are overlaid.",
                       epilog=PLOT_EXAMPLES, formatter_class=_Formatter, allow_abbrev=False)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder, checkpoint folder or its state JSON")
    p.add_argument("-o", "--output", help="PNG to write; default RUN_DIR/training_curves.png for one run, "
                   "training_curves_comparison.png for several")
    p.add_argument("--labels", nargs="+", help="one legend label per run (default: folder names)")


def build_parser() -> argparse.ArgumentParser:
    """The ``cpo`` parser. ``train`` and ``demo`` are listed here but parse their own arguments."""
    parser = argparse.ArgumentParser(prog="cpo", description=DESCRIPTION, formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,plot,prefs,demo}")
    sub.add_parser("train", help="train with CPO: every CPOConfig flag, --config run.yaml (see `cpo train --help`)",
                   add_help=False)
    _add_eval(sub)
    _add_plot(sub)
    _add_prefs(sub)
    sub.add_parser("demo", help="a short end-to-end demonstration (see `cpo demo --help`)", add_help=False)
    return parser


def run_prefs(args) -> int:
    """``cpo prefs``: read and score the candidates, write the pairs, print what was kept and skipped."""
    from .candidates import file_segments, mqm_segments, named_systems
    from .prefs import build_rows, write_jsonl

    if args.mqm:
        if args.src or args.ref or args.system or args.scores or args.metric:
            raise UsageError("--mqm takes its candidates and human scores from the MQM files: drop --src, --ref, "
                             "--system, --scores and --metric.")
        if args.lower_is_better:
            raise UsageError("MQM averages are negated error points: higher is better. Drop --lower_is_better.")
        segments, notes = mqm_segments(args.mqm, args.mqm_scores, include_reference=not args.exclude_reference)
        higher = True
    else:
        if not (args.src and args.ref and args.system):
            raise UsageError("Give --src, --ref and at least one --system (or --mqm TSV).")
        metric = args.metric or "chrf"
        if args.lower_is_better and metric != "given":
            raise UsageError(f"--lower_is_better applies to --metric given; {metric} is higher-is-better.")
        systems = named_systems(args.system, args.reference_name)
        segments = file_segments(args.src, args.ref, systems, metric=metric, tgt_lang=args.tgt_lang,
                                 src_lang=args.src_lang, include_reference=not args.exclude_reference,
                                 reference_name=args.reference_name, score_specs=args.scores,
                                 src_field=args.src_field, ref_field=args.ref_field)
        higher, notes = not args.lower_is_better, []
    rows, report = build_rows(segments, higher_is_better=higher, threshold=args.threshold, src_lang=args.src_lang,
                              tgt_lang=args.tgt_lang, fmt=args.format, completion_prefix=args.completion_prefix,
                              seed=args.seed)
    write_jsonl(args.output, rows)
    print("\n".join([*report.lines(), *notes, f"written to {args.output}"]))
    return 0 if rows else 1


def run_plot(args) -> int:
    """``cpo plot``: the curves of one or several runs in one PNG."""
    from pathlib import Path

    from .plot import plot_training_curves

    out = args.output
    if out is None:
        first = Path(args.run_dirs[0])
        out = (first if first.is_dir() else first.parent) / "training_curves.png" if len(args.run_dirs) == 1 \
            else Path("training_curves_comparison.png")
    print(f"written to {plot_training_curves(args.run_dirs, out, args.labels)}")
    return 0


def run_demo(argv: Sequence[str]) -> int:
    """``cpo demo``: :mod:`cpo.demo` when this installation has it."""
    try:
        from . import demo
    except ModuleNotFoundError as err:
        if err.name != "cpo.demo":
            raise
        print("cpo demo: this installation of cpo has no demo (the module cpo.demo is missing). Update cpo, or run "
              "the loop yourself: see `cpo --help`.", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="cpo demo", formatter_class=_Formatter)
    demo.add_arguments(parser)
    return int(demo.run(parser.parse_args(list(argv))) or 0)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be swapped, e.g. by a test's capture)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging() -> None:
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cpo`` command; returns the exit status (0 ok, 1 nothing produced, 2 a usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    _setup_logging()
    try:
        if command == "train":
            from .cli_train import run_train

            return run_train(argv[1:])
        if command == "demo":
            return run_demo(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        if args.command == "eval":
            _check_eval(args, argv)
            from .evaluate import run

            return run(args)
        return run_prefs(args) if args.command == "prefs" else run_plot(args)
    except UsageError as err:
        print(f"cpo {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cpo {command}: interrupted", file=sys.stderr)
        return 130
