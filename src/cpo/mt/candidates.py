"""Scored candidates, read from line-aligned WMT files, MQM annotation tables, or the JSONL of ``cpo generate``.

The readers return :class:`cpo.pairs.rule.Segment` lists for :func:`cpo.pairs.rule.build_rows`:

- :func:`file_segments`: a source file, a reference file and system output files, one segment a line (the layout of
  ``wmt22/<SYSTEM>/<pair>/test.<src>-<tgt>.<tgt>``), scored by chrF/BLEU against the reference or by score files.
- :func:`mqm_segments`: the Google MQM tables (``mqm_ted_<pair>.tsv`` with one row per error span, and
  ``<name>.avg_seg_scores.tsv`` with the per-segment score of each system). The avg scores are *negated* MQM error
  points (0 is a perfect translation, -25 the worst), so higher is better. Error spans are marked ``<v>...</v>`` in
  the text; the marks are removed.

The rows of ``cpo generate`` (a prompt or a source sentence and its candidates) are read by
:mod:`cpo.pairs.candidates`.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from ..files import check_aligned, check_file, read_lines, read_text
from ..pairs.rule import Candidate, Segment
from ..pairs.scorers import call_scorer, load_scorer, parse_score, read_score_file
from .scores import sentence_scores
from .segments import read_segments

MQM_COLUMNS = ("system", "seg_id", "source", "target")
_SPAN_MARKS = re.compile(r"</?v>")


def parse_named(spec: str) -> tuple[str | None, str]:
    """``"NAME=PATH"`` -> ``(NAME, PATH)``; a bare path -> ``(None, PATH)``. A name has no ``/``."""
    name, sep, path = spec.partition("=")
    if sep and name and "/" not in name and "\\" not in name:
        return name, path
    return None, spec


def system_names(paths: Sequence[str]) -> list[str]:
    """Names for system files given without one: the first folder that differs between the paths
    (``wmt22/GPT-4-1106-preview/deen/test.de-en.en`` -> ``GPT-4-1106-preview``); a single file by its file name."""
    parts = [Path(p).resolve().parts for p in paths]
    if len(parts) > 1:
        for i in range(min(len(p) for p in parts)):
            names = [p[i] for p in parts]
            if len(set(names)) == len(names):
                return names
        return [str(p) for p in paths]
    return [Path(paths[0]).name]


def named_systems(specs: Sequence[str], reserved: str) -> list[tuple[str, str]]:
    """``(name, path)`` for each ``--system`` argument, names made unique and distinct from ``reserved``."""
    named = [parse_named(s) for s in specs]
    unnamed = [path for name, path in named if name is None]
    derived = iter(system_names(unnamed)) if unnamed else iter(())
    out = [(name if name is not None else next(derived), path) for name, path in named]
    names = [n for n, _ in out]
    dup = [n for n, c in Counter(names + [reserved]).items() if c > 1]
    if dup:
        raise UsageError(f"Two candidates are named {dup[0]!r}. Name each system explicitly: --system NAME=PATH "
                         f"(the reference is named {reserved!r}; change that with --reference_name).")
    return out


def _given_scores(names: list[str], score_specs: Sequence[str], n: int) -> dict[str, list[float | None]]:
    files = {}
    for spec in score_specs:
        name, path = parse_named(spec)
        if name is None:
            raise UsageError(f"--scores {spec!r} names no candidate. Write --scores NAME=FILE, with NAME one of "
                             f"{', '.join(names)}.")
        if name not in names:
            raise UsageError(f"--scores names {name!r}, which is not a candidate (candidates: {', '.join(names)}).")
        files[name] = path
    missing = [name for name in names if name not in files]
    if missing:
        raise UsageError(f"--metric given needs a score file for every candidate; missing: {', '.join(missing)}. Add "
                         "--scores NAME=FILE for each (or --exclude_reference to leave the reference out).")
    scores = {name: read_score_file(path, f"score ({name})") for name, path in files.items()}
    for name, path in files.items():
        check_aligned([("source", range(n)), (f"score file of {name} ({path})", scores[name])])
    return scores


def file_segments(src: str, ref: str, systems: Sequence[tuple[str, str]], *, metric: str, tgt_lang: str | None,
                  src_lang: str | None = None, include_reference: bool = True, reference_name: str = "reference",
                  score_specs: Sequence[str] = (), src_field: str | None = None,
                  ref_field: str | None = None, scorer: str | None = None,
                  scorer_batch_size: int = 64) -> list[Segment]:
    """Segments from line-aligned files (or JSON records) with every candidate scored.

    Args:
        systems: ``(name, path)`` of each system output file.
        metric: ``chrf``/``bleu`` (against the reference), ``given`` (``score_specs``: ``NAME=FILE`` for each
            candidate, the reference included unless ``include_reference`` is False), or ``scorer``: the user's
            callable named by ``scorer`` (see :mod:`cpo.pairs.scorers`), given the sources, texts and references.

    Raises:
        UsageError: missing files, misaligned counts (both given), an unknown or missing score file.
    """
    sources = read_segments(src, field=src_field, lang=src_lang, what="source")
    refs = read_segments(ref, field=ref_field, lang=tgt_lang, what="reference")
    outputs = {name: read_lines(path, f"system output ({name})") for name, path in systems}
    n = check_aligned([(f"source {src}", sources), (f"reference {ref}", refs)]
                      + [(f"output of {name} ({path})", outputs[name]) for name, path in systems])
    texts = ({reference_name: refs} if include_reference else {}) | outputs
    if len(texts) < 2:
        raise UsageError("Pairs need at least two candidates: give one more --system (or keep the reference).")
    if metric == "given":
        scores = _given_scores(list(texts), score_specs, n)
    elif metric == "scorer":
        names = list(texts)
        by_segment = call_scorer(load_scorer(scorer), sources, [[texts[k][i] for k in names] for i in range(n)], refs,
                                 batch_size=scorer_batch_size, name=f"scorer {scorer}")
        scores = {k: [by_segment[i][j] for i in range(n)] for j, k in enumerate(names)}
    else:
        if score_specs:
            raise UsageError(f"--scores files are used with --metric given only, not with --metric {metric}.")
        scores = {name: sentence_scores(hyps, refs, metric, tgt_lang) for name, hyps in texts.items()}
    return [Segment(i + 1, sources[i], [Candidate(name, texts[name][i], scores[name][i]) for name in texts])
            for i in range(n)]


def _read_tsv(path: Path, what: str) -> tuple[list[str], list[list[str]]]:
    text = read_text(path, what)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    if len(rows) < 2:
        raise UsageError(f"The {what} file {str(path)!r} has no rows below its header.")
    return rows[0], rows[1:]


def _mqm_texts(path: Path) -> tuple[dict[int, str], dict[tuple[str, int], str]]:
    """``({seg_id: source}, {(system, seg_id): target})`` from an MQM TSV (one row per error), marks removed."""
    header, rows = _read_tsv(path, "MQM annotation")
    missing = [c for c in MQM_COLUMNS if c not in header]
    if missing:
        raise UsageError(f"The MQM file {str(path)!r} has no column {', '.join(map(repr, missing))} (columns: "
                         f"{', '.join(header)}). Expected the Google MQM layout: {', '.join(MQM_COLUMNS)}, ...")
    col = {c: header.index(c) for c in MQM_COLUMNS}
    sources, targets = {}, {}
    for n, row in enumerate(rows, start=2):
        if len(row) < len(header) - 1:  # the last column (comment) may be absent
            raise UsageError(f"The MQM file {str(path)!r}, line {n}, has {len(row)} fields; the header has "
                             f"{len(header)}. Is a tab missing, or a stray quote?")
        try:
            seg = int(row[col["seg_id"]])
        except ValueError:
            raise UsageError(f"The MQM file {str(path)!r}, line {n}: seg_id {row[col['seg_id']]!r} is not an "
                             "integer.") from None
        sources.setdefault(seg, _SPAN_MARKS.sub("", row[col["source"]]))
        targets.setdefault((row[col["system"]], seg), _SPAN_MARKS.sub("", row[col["target"]]))
    return sources, targets


def _mqm_scores(path: Path) -> tuple[dict[tuple[str, int], float], int]:
    """``{(system, seg_id): score}`` from an ``avg_seg_scores`` file (whitespace-separated), and the count of
    ``None`` entries (segments that were not annotated)."""
    lines = [line for line in read_lines(path, "MQM score") if line.strip()]
    if not lines or lines[0].split() != ["system", "mqm_avg_score", "seg_id"]:
        raise UsageError(f"The MQM score file {str(path)!r} does not start with the header "
                         "'system mqm_avg_score seg_id'.")
    scores, none = {}, 0
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if len(parts) < 3 or not parts[-1].isdigit():
            raise UsageError(f"The MQM score file {str(path)!r}, line {n}: expected 'SYSTEM SCORE SEG_ID', got "
                             f"{line.strip()!r}.")
        score = parse_score(parts[-2], str(path), n)
        if score is None:
            none += 1
            continue
        scores[(" ".join(parts[:-2]), int(parts[-1]))] = score
    return scores, none


def _norm(name: str) -> str:
    """System-name key shared by the two MQM files: the TSV says ``ref``/``refB``, the scores ``ref-A``/``ref-B``."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return "refa" if key == "ref" else key


def default_mqm_scores(tsv: str | Path) -> Path:
    """``mqm_ted_ende.tsv`` -> ``mqm_ted_ende.avg_seg_scores.tsv`` (next to it)."""
    p = Path(tsv)
    return p.with_name(p.name[: -len(p.suffix)] + ".avg_seg_scores.tsv" if p.suffix else p.name + ".avg_seg_scores")


def mqm_segments(tsv: str | Path, scores_path: str | Path | None = None, include_reference: bool = True
                 ) -> tuple[list[Segment], list[str]]:
    """Segments of an MQM table, each system's translation scored by its negated MQM (higher is better).

    Args:
        include_reference: keep the human references (systems named ``ref*``) as candidates.

    Returns:
        ``(segments, notes)``: segments in seg_id order; notes say what was left out and why.
    """
    tsv = check_file(tsv, "MQM annotation")
    scores_path = check_file(scores_path or default_mqm_scores(tsv), "MQM score (avg_seg_scores)")
    sources, targets = _mqm_texts(tsv)
    scores, none = _mqm_scores(scores_path)
    by_key = {(_norm(system), seg): s for (system, seg), s in scores.items()}
    systems = sorted({system for system, _ in targets})
    if not include_reference:
        systems = [s for s in systems if not _norm(s).startswith("ref")]
    unscored = Counter(system for (system, seg) in targets if (_norm(system), seg) not in by_key)
    segments = [
        Segment(seg, source, [Candidate(system, targets[(system, seg)], by_key.get((_norm(system), seg)))
                              for system in systems if (system, seg) in targets])
        for seg, source in sorted(sources.items())
    ]
    notes = [f"{none} score entries are None (segments nobody annotated) and have no text: not used"] if none else []
    notes += [f"system {s}: {n} translations have no score in {scores_path.name}" for s, n in sorted(unscored.items())
              if s in systems]
    if not include_reference:
        notes.append("reference translations (systems named ref*) left out of the candidates")
    return segments, notes
