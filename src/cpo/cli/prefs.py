"""`cpo prefs`: preference pairs from scored candidates (best chosen, worst rejected), written as JSONL.

Candidates come from line-aligned files (a reference and system outputs), an MQM table, or the JSONL of
``cpo generate``; they are scored by chrF/BLEU against the reference, by given scores, or by a user's callable
(``--scorer``: a quality model, a reward model or a checker). Nothing is written unless every candidate was scored;
the output is written atomically.
"""

from __future__ import annotations

from functools import partial

from ..errors import UsageError
from ..pairs.alma import SCORE_FIELDS as ALMA_SCORE_FIELDS
from .common import add_output_argument, number, seed_argument, subcommand_parser

EXAMPLES = """\
examples (every file is your own: line-aligned text, one segment a line, e.g. a WMT test set and the translations
of two systems, A and B):
  # the reference and both systems' translations, scored by chrF against the reference
  cpo prefs --src test.de-en.de --ref test.de-en.en --system A=a.en --system B=b.en \\
      --src_lang de --tgt_lang en --output prefs.jsonl
  # system outputs only, conversational rows, pairs at least 5 chrF apart
  cpo prefs ... --exclude_reference --format conversational --threshold 5 --output prefs.jsonl
  # your own scores (one number a line per candidate; lower is better here)
  cpo prefs --src src.de --ref ref.en --system A=a.en --system B=b.en --metric given --lower_is_better \\
      --scores reference=ref.err --scores A=a.err --scores B=b.err --src_lang de --tgt_lang en --output p.jsonl
  # human MQM judgements (a TSV table of Google's WMT MQM data, e.g. mqm_ted_ende.tsv, downloaded by you):
  # best vs worst of its systems per segment
  cpo prefs --mqm mqm_ted_ende.tsv --src_lang en --tgt_lang de --output mqm.jsonl
  # the candidates of `cpo generate`, scored by your own quality model or checker (a Python function)
  cpo prefs --candidates candidates.jsonl --scorer my_qe.py:score --output prefs.jsonl
  # the CPO paper's own triplets (reference, GPT-4, ALMA-13B-LoRA, scored by KIWI-XXL and XCOMET), by its rule;
  # a Hub name needs internet (haoranxu/ALMA-R-Preference, --dataset_config de-en), or give a local copy
  cpo prefs --alma_preference alma_r_de-en.jsonl --directions de-en,en-de --output alma_r.jsonl

Terms: chrF and BLEU compare a translation with the reference (character and word n-gram overlap, 0-100). MQM
(Multidimensional Quality Metrics) is human error annotation: annotators mark each error with a category and a
severity, and a segment's score is its weighted error count.

The reference as a candidate: with --metric chrf or bleu the reference scores 100 against itself, so it is always
*chosen* and each pair is "reference over the worst system". The CPO paper's triplets include the reference too, but
score every candidate with neural quality models, KIWI (reference-free: it reads only the source and the
translation) and XCOMET (reference-based), so there the reference can lose: pass such a model as --scorer.
--exclude_reference pairs the other candidates only, still scored against the reference.

A --scorer is MODULE:FUNCTION or FILE.py:FUNCTION, called as function(sources, candidates, references) with lists of
equal length (one entry per candidate: its source sentence, or its prompt, a string or a list of messages; its
text; its row's reference, or references=None when there are none). It returns one float per candidate, higher is
better (or pass --lower_is_better). See cpo.pairs.scorers.
"""


def build_parser():
    p = subcommand_parser("prefs", "Build CPO preference pairs from scored candidates, as the CPO paper did "
                          "(arXiv 2401.08417, section 3): the best-scored candidate is chosen, the worst rejected.",
                          EXAMPLES)
    add_output_argument(p, "JSONL file to write (trains directly with `cpo train`)", required=True)
    p.add_argument("--src_lang", help="source language code, e.g. de (translations: the prompt)")
    p.add_argument("--tgt_lang", help="target language code, e.g. en (translations: the prompt, BLEU's tokenizer)")
    g = p.add_argument_group("line-aligned inputs")
    g.add_argument("--src", help="source sentences: text file (one a line) or .json/.jsonl")
    g.add_argument("--ref", help="reference translations, line-aligned with --src (or with the --candidates rows)")
    g.add_argument("--system", action="append", default=[], metavar="[NAME=]FILE",
                   help="a system's translations, line-aligned (repeat for each system); without NAME=, the name is "
                   "the folder that differs between the files (<SYSTEM>/test.de-en.en)")
    g.add_argument("--src_field", help="JSON field of the source (default translation.<src_lang>)")
    g.add_argument("--ref_field", help="JSON field of the reference (default translation.<tgt_lang>)")
    g.add_argument("--scores", action="append", default=[], metavar="NAME=FILE",
                   help="with --metric given: one score a line for candidate NAME (the reference is NAME "
                   "'reference'); repeat for every candidate")
    g = p.add_argument_group("the candidates of `cpo generate`")
    g.add_argument("--candidates", metavar="JSONL", help="rows of 'prompt' (or 'source') and 'candidates'; a "
                   "'reference' field (or --ref) is the reference; 'scores' / 'reference_score' are --metric given")
    g.add_argument("--reference_field", default="reference", help="the field of each row that holds its reference")
    g = p.add_argument_group("human MQM judgements (Multidimensional Quality Metrics: human error annotation)")
    g.add_argument("--mqm", metavar="TSV", help="Google MQM table (mqm_ted_ende.tsv): the candidates are its systems, "
                   "scored by the human MQM average (negated error points: higher is better); --exclude_reference "
                   "leaves out the human references (ref*)")
    g.add_argument("--mqm_scores", metavar="FILE", help="its avg_seg_scores file (default: next to the TSV)")
    g = p.add_argument_group("the CPO paper's released triplets (ALMA-R-Preference; X-ALMA-Preference rows too)")
    g.add_argument("--alma_preference", metavar="PATH_OR_HUB_NAME", help="rows of haoranxu/ALMA-R-Preference (a "
                   "local .json/.jsonl/.parquet copy, a folder, or the Hub name): per direction the reference, GPT-4's "
                   "and ALMA's translations; the best-scored is chosen, the worst rejected (ties: reference, then "
                   "GPT-4), a non-zero Delta (a human's verdict) pairs GPT-4 with ALMA. X-ALMA-Preference rows "
                   "(source, chosen, reject, directions) are taken as they are")
    g.add_argument("--dataset_config", help="the Hub dataset's configuration, e.g. de-en")
    g.add_argument("--dataset_split", default="train", help="the split to read; may be sliced: 'train[:500]'")
    g.add_argument("--directions", help="comma-separated directions to build, e.g. de-en,en-de")
    g.add_argument("--score_field", choices=list(ALMA_SCORE_FIELDS), default="kiwi_xcomet",
                   help="the score that ranks the three translations: KIWI-XXL and XCOMET averaged (the paper's), or "
                   "either alone")
    g.add_argument("--invalid_rows", choices=["raise", "skip"], default="raise",
                   help="a row with a missing score or text: stop naming it, or skip it and count it")
    g = p.add_argument_group("scoring")
    g.add_argument("--metric", choices=["chrf", "bleu", "given"], default=None,
                   help="chrf / bleu: sentence score against the reference (default chrf); given: --scores files, or "
                   "the rows' 'scores'")
    g.add_argument("--scorer", metavar="MODULE:FUNCTION", help="your scoring function (MODULE:FUNCTION or "
                   "FILE.py:FUNCTION), e.g. a reference-free quality model; see below")
    g.add_argument("--scorer_batch_size", type=number(int, 1), default=64, help="candidates per call of --scorer")
    g.add_argument("--lower_is_better", action="store_true", help="with --metric given or --scorer: lower scores are "
                   "better (e.g. error counts); default: higher is better")
    g = p.add_argument_group("pairs and output")
    g.add_argument("--exclude_reference", action="store_true",
                   help="leave the reference out of the candidates (see below)")
    g.add_argument("--reference_name", default="reference", help="the reference's name in the output rows")
    g.add_argument("--threshold", type=number(float, 0), default=0.0,
                   help="skip pairs whose score gap is smaller than this (ties are always skipped)")
    g.add_argument("--format", choices=["standard", "conversational"], default=None,
                   help="translations: standard (prompt/chosen/rejected strings with the ALMA prompt; the default) or "
                   "conversational (a user turn and assistant turns; the default for `cpo generate --template "
                   "chat` rows). Prompt rows keep their prompt's form")
    g.add_argument("--completion_prefix", default=" ", help="standard translations: text before each completion "
                   "(default: a space), so that prompt + completion reads 'English: <translation>'")
    seed_argument(g, "breaks ties between equally scored candidates at random")
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
    from ..files import check_file, read_json_records
    from ..mt.pairs import pair_row
    from ..mt.scores import sentence_scores
    from ..mt.segments import read_segments
    from ..pairs.candidates import read_candidates, score_candidates
    from ..pairs.rule import prompt_pair_row

    if args.src or args.system or args.scores or args.mqm:
        raise UsageError("--candidates holds the prompts and candidates: drop --src, --system, --scores and --mqm.")
    if args.scorer and args.metric:
        raise UsageError("Give either --scorer or --metric, not both.")
    if args.lower_is_better and args.metric in (None, "chrf", "bleu") and not args.scorer:
        raise UsageError("--lower_is_better applies to --metric given or --scorer.")
    references = None
    if args.ref:  # a text file, or a JSON file read as cpo eval reads it (translation.<tgt_lang> of the rows)
        first = read_json_records(check_file(args.candidates, "candidates"), "candidates")[:1]
        lang = args.tgt_lang or (first[0].get("tgt_lang") if first and isinstance(first[0], dict) else None)
        references = read_segments(args.ref, lang=lang, what="reference")
    rows = read_candidates(args.candidates, references=references, reference_field=args.reference_field,
                           include_reference=not args.exclude_reference, reference_name=args.reference_name)
    first = rows.segments[0].fields
    src_lang, tgt_lang = args.src_lang or first.get("src_lang"), args.tgt_lang or first.get("tgt_lang")
    metric = args.metric or ("chrf" if not args.scorer else None)
    segments = score_candidates(
        rows, scorer=args.scorer, given=metric == "given", batch_size=args.scorer_batch_size,
        against_reference=partial(sentence_scores, metric=metric, tgt_lang=tgt_lang) if metric in ("chrf", "bleu")
        else None, metric_name=f"--metric {metric}")
    if not rows.translation:
        return segments, prompt_pair_row
    if src_lang is None or tgt_lang is None:
        raise UsageError("These rows are translations ('source' fields): give --src_lang and --tgt_lang (or write "
                         "them in the rows, as `cpo generate --src` does).")
    fmt = args.format or ("conversational" if first.get("template") == "chat" else "standard")
    return segments, partial(pair_row, src_lang=src_lang, tgt_lang=tgt_lang, fmt=fmt,
                             completion_prefix=args.completion_prefix)


def _alma_rows(args) -> tuple[list[dict], list[str]]:
    """Pairs of the ALMA-R rule (cpo.pairs.alma) as ALMA-prompt rows, and the rule's report."""
    from ..mt.pairs import pair_row
    from ..mt.prompts import LANGUAGES
    from ..pairs.alma import alma_pairs
    from ..pairs.rule import Candidate, Segment
    from .loading import load_dataset_split

    others = [f for f in ("src", "ref", "system", "scores", "mqm", "candidates", "metric", "scorer") if getattr(args, f)]
    if others:
        raise UsageError(f"--alma_preference holds the candidates and their scores: drop --{', --'.join(others)}.")
    if not args.directions:
        raise UsageError("--alma_preference needs --directions, e.g. --directions de-en,en-de.")
    directions = [d.strip() for d in args.directions.split(",") if d.strip()]
    for d in directions:
        codes = d.split("-")
        if len(codes) != 2 or any(c not in LANGUAGES for c in codes):
            raise UsageError(f"--directions: {d!r} is not a direction of two known language codes (like de-en); the "
                             f"known codes are {', '.join(sorted(LANGUAGES))}.")
    data = load_dataset_split(args.alma_preference, args.dataset_config, args.dataset_split)
    try:
        pairs, report = alma_pairs(iter(data), directions, score_field=args.score_field, languages=LANGUAGES,
                                   invalid_rows=args.invalid_rows)
    except ValueError as err:  # a RowError naming the row and field, or a direction that no row has
        raise UsageError(f"{args.alma_preference}: {err}") from None
    rows = []
    for p in pairs:
        src, tgt = p.direction.split("-")
        rows.append(pair_row(Segment(p.row, p.source, []), Candidate(p.chosen_system or "chosen", p.chosen, None),
                             Candidate(p.rejected_system or "rejected", p.rejected, None), src_lang=src,
                             tgt_lang=tgt, fmt=args.format or "standard", completion_prefix=args.completion_prefix))
    return rows, report.lines()


def run(args) -> int:
    """Read and score the candidates, write the pairs, print what was kept and skipped."""
    from ..mt.candidates import mqm_segments
    from ..mt.pairs import pair_row
    from ..pairs.rule import build_rows

    notes = []
    if args.alma_preference:
        rows, lines = _alma_rows(args)
        return _write_pairs(args.output, rows, lines)
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
    return _write_pairs(args.output, rows, [*report.lines(), *notes])


def _write_pairs(output: str, rows: list[dict], lines: list[str]) -> int:
    """Write the pairs (atomically) and print the report; with no pair, leave ``output`` as it was and return 1."""
    from ..files import write_jsonl

    if rows:
        write_jsonl(output, rows)
    print("\n".join([*lines, f"written to {output}" if rows else f"no pairs: {output} left as it was"]))
    return 0 if rows else 1
