"""examples/scorers.py, loaded as `cpo prefs --scorer` loads it: values by hand, and a run of `cpo prefs`."""

import json
import math

import pytest
import sacrebleu
from helpers import ROOT

from cpo.cli import main
from cpo.pairs.scorers import load_scorer

SCORERS = ROOT / "examples" / "scorers.py"


def test_chrf_against_reference_is_sentence_chrf():
    fn = load_scorer(f"{SCORERS}:chrf_against_reference")
    cands, refs = ["The house is old.", "House old."], ["The house is old.", "The house is old."]
    assert fn(["Das Haus ist alt."] * 2, cands, refs) == [sacrebleu.sentence_chrf(c, [r]).score
                                                           for c, r in zip(cands, refs)]
    with pytest.raises(ValueError, match="needs references"):
        fn(["x"], ["y"], None)


def test_copy_and_length_check_by_hand():
    fn = load_scorer(f"{SCORERS}:copy_and_length_check")
    src = "Das Haus ist alt."  # 17 characters
    good, copy, long = "The house is old.", "Das Haus ist alt.", "The house is old, very old, so very old indeed."
    scores = fn([src] * 4, [good, copy, long, "  "], None)
    assert scores[0] == pytest.approx(-sacrebleu.sentence_chrf(good, [src]).score)  # same length: no penalty
    assert scores[1] == -100.0  # a copy: chrF 100 against the source
    assert scores[2] == pytest.approx(-sacrebleu.sentence_chrf(long, [src]).score - 50 * math.log2(len(long) / 17))
    assert scores[3] == -200.0 and scores[0] > scores[2] > scores[1]


def test_prefs_with_the_reference_free_check(tmp_path, capsys):
    rows = [{"source": "Das Haus ist alt.", "src_lang": "de", "tgt_lang": "en",
             "candidates": ["The house is old.", "Das Haus ist alt.", ""]}]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "p.jsonl"
    assert main(["prefs", "--candidates", str(path), "--scorer", f"{SCORERS}:copy_and_length_check",
                 "--output", str(out)]) == 0
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert (row["chosen"], row["rejected"]) == (" The house is old.", " Das Haus ist alt.")  # the empty one is unusable
    assert "1 empty" in capsys.readouterr().out
