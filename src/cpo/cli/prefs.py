"""`cpo prefs`: preference pairs from scored candidates (best chosen, worst rejected), written as JSONL."""

from __future__ import annotations

from functools import partial

from ..errors import UsageError
from .common import subcommand_parser

EXAMPLES = """\
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


def build_parser():
    p = subcommand_parser("prefs", "Build CPO preference pairs from candidate translations, as the CPO paper did "
                          "(arXiv 2401.08417, section 3): the best-scored candidate is chosen, the worst rejected.",
                          EXAMPLES)
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
    return p


def run(args) -> int:
    """``cpo prefs``: read and score the candidates, write the pairs, print what was kept and skipped."""
    from ..mt.candidates import file_segments, mqm_segments, named_systems
    from ..mt.pairs import build_rows, pair_row
    from ..mt.segments import write_jsonl

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
    make_row = partial(pair_row, src_lang=args.src_lang, tgt_lang=args.tgt_lang, fmt=args.format,
                       completion_prefix=args.completion_prefix)
    rows, report = build_rows(segments, make_row, higher_is_better=higher, threshold=args.threshold, seed=args.seed)
    write_jsonl(args.output, rows)
    print("\n".join([*report.lines(), *notes, f"written to {args.output}"]))
    return 0 if rows else 1
