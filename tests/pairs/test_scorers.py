"""A scorer's results are taken strictly (issue 20, faults 3 and 10): real numbers only, one per candidate, in
batches of at least one; anything else is refused with the prompt and candidate named, and nothing is written."""

import json
import re

import numpy as np
import pytest
import torch

from cpo.cli import main
from cpo.errors import UsageError
from cpo.pairs.scorers import call_scorer

SOURCES, CANDIDATES = ["Write 7.", "Write 9."], [["seven", "sevn"], ["nine"]]


def scorer_returning(value):
    return lambda sources, candidates, references: value(candidates)


@pytest.mark.parametrize("value, shown", [
    (lambda c: [True, False, True], r"gave True for prompt 1 candidate 1 \('seven'\), a bool"),
    (lambda c: ["1", "2", "3"], r"gave '1' for prompt 1 candidate 1 \('seven'\), a str"),
    (lambda c: [1.0, None, 2.0], r"gave None for prompt 1 candidate 2 \('sevn'\), a NoneType"),
    (lambda c: [1.0, 2.0, [3.0]], r"gave \[3.0\] for prompt 2 candidate 1 \('nine'\), a list"),
    (lambda c: [1.0, 2.0, complex(1, 0)], r"gave \(1\+0j\) for prompt 2 candidate 1 \('nine'\), a complex"),
    (lambda c: "123", r"returned a str for a batch of 3 candidates"),  # list("123") would be three scores
    (lambda c: {"seven": 1.0, "sevn": 2.0, "nine": 3.0}, r"returned a dict"),  # its keys would be the scores
    (lambda c: 1.0, r"returned a float"),
    (lambda c: np.array([True, False, True]), r"gave np.True_ for prompt 1 candidate 1 \('seven'\), a bool"),
])
def test_a_scorer_must_return_real_numbers(value, shown):
    with pytest.raises(UsageError, match=shown) as err:
        call_scorer(scorer_returning(value), SOURCES, CANDIDATES, None, batch_size=3)
    assert "Nothing was written" in str(err.value)


@pytest.mark.parametrize("value", [
    lambda c: [3, 2.5, 1], lambda c: (3, 2.5, 1), lambda c: (x for x in [3, 2.5, 1]),
    lambda c: np.array([3, 2.5, 1], dtype=np.float32), lambda c: torch.tensor([3, 2.5, 1]),
    lambda c: [np.int64(3), np.float64(2.5), torch.tensor(1.0)],
])
def test_real_numbers_in_any_sequence_are_taken_as_floats(value):
    scores = call_scorer(scorer_returning(value), SOURCES, CANDIDATES, None, batch_size=3)
    assert scores == [[3.0, 2.5], [1.0]] and all(type(s) is float for row in scores for s in row)


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_a_batch_size_below_one_is_refused_not_skipped(size):
    """Fault 3: batch size -1 made range() empty: the scorer was never called and every score stayed 0."""
    calls = []

    def score(sources, candidates, references):
        calls.append(len(candidates))
        return [1.0] * len(candidates)

    with pytest.raises(UsageError, match="batch size must be an integer >= 1"):
        call_scorer(score, SOURCES, CANDIDATES, None, batch_size=size)
    assert calls == []


@pytest.mark.parametrize("size", ["0", "-1", "nan", "1.5"])
def test_prefs_refuses_a_scorer_batch_size_below_one_at_once(tmp_path, capsys, size):
    cands = tmp_path / "cands.jsonl"
    cands.write_text(json.dumps({"prompt": "Write 7.", "candidates": ["seven", "sevn"]}) + "\n", encoding="utf-8")
    out = tmp_path / "prefs.jsonl"
    out.write_text("mine\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["prefs", "--candidates", str(cands), "--scorer", "nowhere.py:score", "--scorer_batch_size", size,
              "--output", str(out)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert re.search(rf"argument --scorer_batch_size: '?{re.escape(size)}'? .*an integer >= 1", err), err
    assert out.read_text(encoding="utf-8") == "mine\n"
