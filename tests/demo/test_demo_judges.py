"""The demo's judges: the oracle's pairs, the noisy judge's flips (coupled over P, accuracy exactly the unflipped
share), chrF against the reference with the reference left out, and names refused before any work."""

import json
import random

import pytest

from cpo.cli import main
from cpo.demo.judges import Judge, chrf_against_reference, judge_pairs, parse_judge
from cpo.demo.task import check_answer, number_words

ROWS = [  # (number, reference, flaw, samples)
    (347, "three hundred forty-seven", "no_and", ["three hundred and forty-seven", "three hundred and forty-eight"]),
    (21, "twenty-one", None, ["twenty-one", "twelve", "twenty one"]),
    (58, "fifty-eight", None, ["fifty-eight", "fifty-eight"]),
    (605, "six hundred and four", "neighbour", ["six hundred and five", "six hundred and fifty", "sixty-five"]),
]


@pytest.fixture
def candidates(tmp_path):
    path = tmp_path / "candidates.jsonl"
    rows = [{"prompt": [{"role": "user", "content": f"Write {n} in English words."}], "reference": ref,
             "number": n, "flaw": flaw, "candidates": samples} for n, ref, flaw, samples in ROWS * 25]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_parse_judge():
    assert parse_judge("oracle") == Judge("oracle")
    assert parse_judge("chrf-ref") == Judge("chrf-ref", against_reference=True)
    assert parse_judge("noisy-0.25") == Judge("noisy-0.25", flip=0.25)
    for bad in ("noisy-1.5", "noisy-0", "noisy", "chrf", "Oracle"):
        with pytest.raises(ValueError, match="is not a judge; use oracle, noisy-P"):
            parse_judge(bad)


def test_oracle_pairs_best_against_worst_with_the_reference(candidates):
    pairs, stats = judge_pairs(parse_judge("oracle"), candidates, seed=0)
    # 58: reference and both samples right, a tie; the other three make a pair each, 25 times
    assert stats["pairs"] == 75 and stats["skipped"] == {"tie": 25} and stats["flipped"] == 0
    assert stats["chosen_correct"] == 1.0 and stats["pair_accuracy"] == 1.0
    by_number = {p["number"]: p for p in pairs}
    assert by_number[347]["chosen"][0]["content"] == "three hundred and forty-seven"
    assert by_number[605]["rejected"][0]["content"] == "sixty-five"
    for n, ref, _, samples in ROWS[:2] + ROWS[3:]:  # chosen: the checker's best of reference + samples; rejected: worst
        scores = {t: check_answer(t, n, "en") for t in [ref, *samples]}
        assert by_number[n]["chosen_score"] == max(scores.values()) > by_number[n]["rejected_score"] == min(
            scores.values())
    assert stats["reference_rejected"] == 25 * sum(p["rejected_system"] == "reference" for p in by_number.values())


def test_noisy_judge_flips_coupled_draws_and_its_accuracy_is_the_unflipped_share(candidates):
    oracle, _ = judge_pairs(parse_judge("oracle"), candidates, seed=3)
    low, low_stats = judge_pairs(parse_judge("noisy-0.2"), candidates, seed=3)
    high, high_stats = judge_pairs(parse_judge("noisy-0.6"), candidates, seed=3)
    draws = random.Random("noisy-3")
    expected = [draws.random() for _ in oracle]
    for pairs, p, stats in ((low, 0.2, low_stats), (high, 0.6, high_stats)):
        flipped = [a["chosen"] != b["chosen"] for a, b in zip(pairs, oracle)]
        assert flipped == [u < p for u in expected]
        assert stats["flipped"] == sum(flipped) and abs(stats["pair_accuracy"] - (1 - sum(flipped) / len(pairs))) < 1e-12
        for a, b, f in zip(pairs, oracle, flipped):  # a flip swaps texts, systems and scores together
            if f:
                assert (a["chosen"], a["rejected_system"], a["chosen_score"]) == (
                    b["rejected"], b["chosen_system"], b["rejected_score"])
    low_set = {i for i, (a, b) in enumerate(zip(low, oracle)) if a["chosen"] != b["chosen"]}
    high_set = {i for i, (a, b) in enumerate(zip(high, oracle)) if a["chosen"] != b["chosen"]}
    assert low_set < high_set  # one draw per pair for every P


def test_chrf_ref_judge_leaves_the_reference_out_and_follows_it(candidates):
    pairs, stats = judge_pairs(parse_judge("chrf-ref"), candidates, seed=0)
    assert stats["reference_chosen"] == stats["reference_rejected"] == 0
    by_number = {p["number"]: p for p in pairs}
    for n, ref, _, samples in ROWS:  # chosen: the sample closest to the (possibly flawed) reference; rejected: farthest
        if n in by_number:
            scores = chrf_against_reference(samples, [ref] * len(samples))
            assert (by_number[n]["chosen_score"], by_number[n]["rejected_score"]) == (max(scores), min(scores))
    assert by_number[21]["chosen"][0]["content"] == "twenty-one" and by_number[21]["rejected"][0]["content"] == "twelve"
    assert 58 not in by_number  # two identical samples: a tie
    truth = [check_answer(p["chosen"][0]["content"], p["number"], "en") for p in pairs]
    assert stats["chosen_correct"] == sum(t == 100 for t in truth) / len(pairs)
    assert all(p["chosen_system"].startswith("candidate") for p in pairs)
    assert number_words(21, "en") == "twenty-one"


def test_cli_refuses_an_unknown_judge_before_loading(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--judge", "noisy-2", "--output_dir", "/nonexistent/never"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --judge" in err and "is not a judge; use oracle, noisy-P" in err
