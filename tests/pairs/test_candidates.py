"""Pairs from the JSONL of `cpo generate`, scored by a callable: best and worst against a hand-built table, ties and
the reference counted, a scorer that fails or returns NaN or the wrong count named, and nothing written then."""

import json
import re
import sys

import pytest

from cpo.cli import main
from cpo.errors import UsageError
from cpo.mt.scores import sentence_scores
from cpo.pairs.candidates import read_candidates, score_candidates
from cpo.pairs.rule import build_rows, prompt_pair_row
from cpo.pairs.scorers import call_scorer, load_scorer


def chrf(texts, refs):
    return sentence_scores(texts, refs, "chrf")

# prompt -> {candidate text: score}; the scorer below looks the scores up, so best and worst are known by hand
TABLE = {
    "Write 7.": {"seven": 10.0, "eleven": 2.0, "sevn": 5.0},
    "Write 8.": {"eight": 3.0, "ate": 3.0},  # a tie: no pair
    "Write 9.": {"nine": 1.0, "nein": 4.0, "none": -2.0},
}
REFERENCES = {"Write 7.": "Seven!", "Write 9.": "nine!"}  # none for "Write 8."; the scorer gives references 6.0
SCORER = f"""
TABLE = {TABLE!r}
REF_SCORE = 6.0
CALLS = []

def score(sources, candidates, references):
    CALLS.append(len(candidates))
    return [REF_SCORE if references and c == references[i] else TABLE[sources[i]][c]
            for i, c in enumerate(candidates)]

def nan(sources, candidates, references):
    return [float("nan") if c == "sevn" else 1.0 for c in candidates]

def short(sources, candidates, references):
    return [1.0] * (len(candidates) - 1)

def boom(sources, candidates, references):
    raise RuntimeError("the quality model ran out of memory")
"""


@pytest.fixture
def files(tmp_path):
    scorer = tmp_path / "my_qe.py"
    scorer.write_text(SCORER, encoding="utf-8")
    cands = tmp_path / "cands.jsonl"
    cands.write_text("".join(json.dumps({"prompt": p, **({"reference": REFERENCES[p]} if p in REFERENCES else {}),
                                         "topic": "numbers", "candidates": list(c)}) + "\n" for p, c in TABLE.items()))
    return cands, scorer


def test_best_and_worst_by_the_callable_against_the_hand_table(files, tmp_path):
    cands, scorer = files
    rows = read_candidates(str(cands), include_reference=False)
    segments = score_candidates(rows, scorer=f"{scorer}:score", batch_size=2)
    pairs, report = build_rows(segments, prompt_pair_row)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("Write 7.", "seven", "eleven"), ("Write 9.", "nein", "none")]
    assert pairs[0]["topic"] == "numbers" and pairs[0]["chosen_score"] == 10.0 and pairs[0]["rejected_score"] == 2.0
    assert dict(report.skipped) == {"tie": 1} and report.rows == 2


def test_the_reference_is_a_candidate_and_the_report_counts_it(files, tmp_path, capsys):
    cands, scorer = files
    out = tmp_path / "prefs.jsonl"
    # the references score 6: below "seven" (10) for 7, above "nein" (4) for 9; 8 has none and ties
    assert main(["prefs", "--candidates", str(cands), "--scorer", f"{scorer}:score", "--output", str(out)]) == 0
    pairs = [json.loads(x) for x in out.read_text().splitlines()]
    printed = capsys.readouterr().out
    assert [(p["chosen"], p["rejected"], p["chosen_system"], p["rejected_system"]) for p in pairs] == [
        ("seven", "eleven", "candidate1", "candidate2"), ("nine!", "none", "reference", "candidate3")]
    assert "segments skipped: 1:\n  1 tie" in printed
    assert "the reference was chosen in 1 of 2 pairs and rejected in 0" in printed


def test_scorer_by_module_name(files, tmp_path, monkeypatch):
    cands, scorer = files
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_qe", raising=False)
    fn = load_scorer("my_qe:score")
    assert fn(["Write 7."], ["sevn"], None) == [5.0]
    scores = call_scorer(fn, ["Write 7.", "Write 9."], [["seven", "sevn", "eleven"], ["none"]], None, batch_size=3)
    assert scores == [[10.0, 5.0, 2.0], [-2.0]]
    assert sys.modules["my_qe"].CALLS == [1, 3, 1]  # batches of at most 3 candidates, across prompts


@pytest.mark.parametrize("name, message", [
    ("nan", r"gave nan for prompt 1 candidate 3 \('sevn'\)"),
    ("short", r"returned 2 scores for a batch of 3 candidates \(starting at prompt 1 candidate 1\)"),
    ("boom", r"raised RuntimeError: the quality model ran out of memory .* starting at prompt 1 candidate 1"),
    ("absent", r"has no function 'absent'"),
])
def test_a_failing_scorer_is_named_and_nothing_is_written(files, tmp_path, capsys, name, message):
    cands, scorer = files
    out = tmp_path / "prefs.jsonl"
    assert main(["prefs", "--candidates", str(cands), "--scorer", f"{scorer}:{name}", "--exclude_reference",
                 "--scorer_batch_size", "3", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err
    assert not out.exists() and list(tmp_path.glob(".prefs.jsonl.*")) == []


def test_candidate_rows_errors_name_the_row_and_field(tmp_path):
    path = tmp_path / "c.jsonl"
    for row, message in [({"prompt": "p", "candidates": "x"}, "row 1, field 'candidates'"),
                         ({"candidates": ["x"]}, "row 1, field 'prompt': is missing"),
                         ({"prompt": "p", "candidates": ["a"], "scores": [1, 2]}, "row 1, field 'scores'")]:
        path.write_text(json.dumps(row) + "\n")
        with pytest.raises(UsageError, match=re.escape(message)):
            read_candidates(str(path))
    path.write_text(json.dumps({"prompt": "p", "candidates": ["a", "b"]}) + "\n")
    with pytest.raises(UsageError, match="--metric chrf scores against the reference, and row 1 has none"):
        score_candidates(read_candidates(str(path)), against_reference=chrf, metric_name="--metric chrf")
    with pytest.raises(ValueError, match="exactly one of"):
        score_candidates(read_candidates(str(path)), against_reference=chrf, given=True)


def test_chrf_and_given_scores_from_the_rows(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"source": "Das Haus.", "reference": "The house.", "src_lang": "de", "tgt_lang": "en",
                                "candidates": ["The house.", "A home."], "scores": [1, 5],
                                "reference_score": 3}) + "\n")
    by_chrf = score_candidates(read_candidates(str(path)), against_reference=chrf)[0]
    assert [c.system for c in by_chrf.candidates] == ["reference", "candidate1", "candidate2"]
    assert by_chrf.candidates[0].score == by_chrf.candidates[1].score == 100.0 > by_chrf.candidates[2].score
    given = score_candidates(read_candidates(str(path)), given=True)[0]
    assert [c.score for c in given.candidates] == [3.0, 1.0, 5.0]
    out = tmp_path / "p.jsonl"
    assert main(["prefs", "--candidates", str(path), "--metric", "given", "--output", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["prompt"] == "Translate this from German to English:\nGerman: Das Haus.\nEnglish:"
    assert (row["chosen"], row["rejected"]) == (" A home.", " The house.")


def test_references_from_a_wmt_json_file(tmp_path):
    """--ref may be a JSON test set: read as `cpo eval` reads it, translation.<tgt_lang> of the rows' language."""
    from helpers import asset

    from cpo.mt.segments import read_segments

    js = asset("wmt-human-written", "deen", "test.de-en.json")
    sources = read_segments(js, lang="de")
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"source": s, "src_lang": "de", "tgt_lang": "en", "candidates": ["a", "b"]})
                            + "\n" for s in sources))
    rows = read_candidates(str(path), references=read_segments(js, lang="en"))
    assert rows.references == read_segments(js, lang="en") and len(rows.references) == 40
    assert rows.segments[0].candidates[0].text == rows.references[0]  # the reference joins as a candidate
    out = tmp_path / "p.jsonl"  # the command reads the JSON --ref by the rows' tgt_lang
    assert main(["prefs", "--candidates", str(path), "--ref", str(js), "--output", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["chosen"] == " " + rows.references[0]
