"""`cpo prefs`: preference pairs from scored candidates (best chosen, worst rejected), written as JSONL.

Candidates come from line-aligned files (a reference and system outputs), an MQM table, or the JSONL of
``cpo generate``; they are scored by chrF/BLEU against the reference, by given scores, or by a user's callable
(``--scorer``: a quality model, a reward model or a checker). Nothing is written unless every candidate was scored;
the output is written atomically.
"""

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
  # the candidates of `cpo generate`, scored by your own quality model or checker (a Python function)
  cpo prefs --candidates candidates.jsonl --scorer my_qe.py:score --output prefs.jsonl

The reference as a candidate: with --metric chrf or bleu the reference scores 100 against itself, so it is always
*chosen* and each pair is "reference over the worst system" (the CPO paper's triplets include the reference too, but
score it with reference-free metrics, so there it can lose: use --scorer). --exclude_reference pairs the other
candidates only, still scored against the reference.

A --scorer is MODULE:FUNCTION or FILE.py:FUNCTION, called as function(sources, candidates, references) with lists of
equal length (one entry per candidate: its source sentence, or its prompt, a string or a list of messages; its
text; its row's reference, or references=None when there are none). It returns one float per candidate, higher is
better (or pass --lower_is_better). See cpo.mt.scores.
"""


def build_parser():
    p = subcommand_parser("prefs", "Build CPO preference pairs from scored candidates, as the CPO paper did "
                          "(arXiv 2401.08417, section 3): the best-scored candidate is chosen, the worst rejected.",
                          EXAMPLES)
    p.add_argument("--output", required=True, help="JSONL file to write (trains directly with `cpo train`)")
    p.add_argument("--src_lang", help="source language code, e.g. de (translations: the prompt)")
    p.add_argument("--tgt_lang", help="target language code, e.g. en (translations: the prompt, BLEU's tokenizer)")
    g = p.add_argument_group("line-aligned inputs")
    g.add_argument("--src", help="source sentences: text file (one a line) or .json/.jsonl")
    g.add_argument("--ref", help="reference translations, line-aligned with --src (or with the --candidates rows)")
    g.add_argument("--system", action="append", default=[], metavar="[NAME=]FILE",
                   help="a system's translations, line-aligned (repeat for each system); the name defaults to the "
                   "folder that differs between the files (wmt22/<SYSTEM>/...)")
    g.add_argument("--src_field", help="JSON field of the source (default translation.<src_lang>)")
    g.add_argument("--ref_field", help="JSON field of the reference (default translation.<tgt_lang>)")
    g.add_argument("--scores", action="append", default=[], metavar="NAME=FILE",
                   help="with --metric given: one score a line for candidate NAME (the reference is NAME "
                   "'reference'); repeat for every candidate")
    g = p.add_argument_group("the candidates of `cpo generate`")
    g.add_argument("--candidates", metavar="JSONL", help="rows of 'prompt' (or 'source') and 'candidates'; a "
                   "'reference' field (or --ref) is the reference; 'scores' / 'reference_score' are --metric given")
    g.add_argument("--reference_field", default="reference", help="the rows' reference field")
    g = p.add_argument_group("human MQM judgements")
    g.add_argument("--mqm", metavar="TSV", help="Google MQM table (mqm_ted_ende.tsv): the candidates are its systems, "
                   "scored by the human MQM average (negated error points: higher is better); --exclude_reference "
                   "leaves out the human references (ref*)")
    g.add_argument("--mqm_scores", metavar="FILE", help="its avg_seg_scores file (default: next to the TSV)")
    g = p.add_argument_group("scoring")
    g.add_argument("--metric", choices=["chrf", "bleu", "given"], default=None,
                   help="chrf / bleu: sentence score against the reference (default chrf); given: --scores files, or "
                   "the rows' 'scores'")
    g.add_argument("--scorer", metavar="MODULE:FUNCTION", help="your scoring function (MODULE:FUNCTION or "
                   "FILE.py:FUNCTION), e.g. a reference-free quality model; see below")
    g.add_argument("--scorer_batch_size", type=int, default=64, help="candidates per call of --scorer")
    g.add_argument("--lower_is_better", action="store_true", help="with --metric given or --scorer: lower scores are "
                   "better (e.g. error counts); default: higher is better")
    g = p.add_argument_group("pairs and output")
    g.add_argument("--exclude_reference", action="store_true",
                   help="leave the reference out of the candidates (see below)")
    g.add_argument("--reference_name", default="reference", help="the reference's name in the output rows")
    g.add_argument("--threshold", type=float, default=0.0,
                   help="skip pairs whose score gap is smaller than this (ties are always skipped)")
    g.add_argument("--format", choices=["standard", "conversational"], default=None,
                   help="translations: standard (prompt/chosen/rejected strings with the ALMA prompt; the default) or "
                   "conversational (a user turn and assistant turns; the default for `cpo generate --template "
                   "chat` rows). Prompt rows keep their prompt's form")
    g.add_argument("--completion_prefix", default=" ", help="standard translations: text before each completion, so "
                   "that prompt + completion reads 'English: <translation>'")
    g.add_argument("--seed", type=int, default=0, help="breaks ties between equally scored candidates at random")
    return p


def _line_segments(args):
    from ..mt.candidates import file_segments, named_systems

    if not (args.src and args.ref and args.system):
        raise UsageError("Give --src, --ref and at least one --system (or --mqm TSV, or --candidates JSONL).")
    if args.scorer and args.metric:
        raise UsageError("Give either --scorer or --metric, not both.")
    metric = args.metric or ("scorer" if args.scorer else "chrf")
    if args.lower_is_better and metric in ("chrf", "bleu"):
        raise UsageError(f"--lower_is_better applies to --metric given or --scorer; {metric} is higher-is-better.")
    systems = named_systems(args.system, args.reference_name)
    return file_segments(args.src, args.ref, systems, metric=metric, tgt_lang=args.tgt_lang, src_lang=args.src_lang,
                         include_reference=not args.exclude_reference, reference_name=args.reference_name,
                         score_specs=args.scores, src_field=args.src_field, ref_field=args.ref_field,
                         scorer=args.scorer, scorer_batch_size=args.scorer_batch_size)


def _candidate_segments(args):
    """Segments of a `cpo generate` file, scored, and the row builder for them."""
    from ..mt.candidates import read_candidates, score_candidates
    from ..mt.pairs import pair_row, prompt_pair_row

    if args.src or args.system or args.scores or args.mqm:
        raise UsageError("--candidates holds the prompts and candidates: drop --src, --system, --scores and --mqm.")
    if args.lower_is_better and args.metric in (None, "chrf", "bleu") and not args.scorer:
        raise UsageError("--lower_is_better applies to --metric given or --scorer.")
    rows = read_candidates(args.candidates, ref=args.ref, reference_field=args.reference_field,
                           include_reference=not args.exclude_reference, reference_name=args.reference_name)
    first = rows.segments[0].fields
    src_lang, tgt_lang = args.src_lang or first.get("src_lang"), args.tgt_lang or first.get("tgt_lang")
    segments = score_candidates(rows, metric=args.metric, scorer=args.scorer, tgt_lang=tgt_lang,
                                batch_size=args.scorer_batch_size)
    if not rows.translation:
        return segments, prompt_pair_row
    if src_lang is None or tgt_lang is None:
        raise UsageError("These rows are translations ('source' fields): give --src_lang and --tgt_lang (or write "
                         "them in the rows, as `cpo generate --src` does).")
    fmt = args.format or ("conversational" if first.get("template") == "chat" else "standard")
    return segments, partial(pair_row, src_lang=src_lang, tgt_lang=tgt_lang, fmt=fmt,
                             completion_prefix=args.completion_prefix)


def run(args) -> int:
    """Read and score the candidates, write the pairs, print what was kept and skipped."""
    from ..mt.candidates import mqm_segments
    from ..mt.pairs import build_rows, pair_row
    from ..mt.segments import write_jsonl

    notes = []
    if args.candidates:
        segments, make_row = _candidate_segments(args)
    else:
        if args.src_lang is None or args.tgt_lang is None:
            raise UsageError("Translations need --src_lang and --tgt_lang (for the prompt).")
        if args.mqm:
            if args.src or args.ref or args.system or args.scores or args.metric or args.scorer:
                raise UsageError("--mqm takes its candidates and human scores from the MQM files: drop --src, --ref, "
                                 "--system, --scores, --metric and --scorer.")
            if args.lower_is_better:
                raise UsageError("MQM averages are negated error points: higher is better. Drop --lower_is_better.")
            segments, notes = mqm_segments(args.mqm, args.mqm_scores, include_reference=not args.exclude_reference)
        else:
            segments = _line_segments(args)
        make_row = partial(pair_row, src_lang=args.src_lang, tgt_lang=args.tgt_lang, fmt=args.format or "standard",
                           completion_prefix=args.completion_prefix)
    rows, report = build_rows(segments, make_row, higher_is_better=not args.lower_is_better,
                              threshold=args.threshold, seed=args.seed,
                              reference=None if args.exclude_reference else args.reference_name)
    write_jsonl(args.output, rows)
    print("\n".join([*report.lines(), *notes, f"written to {args.output}"]))
    return 0 if rows else 1
