"""The committed demo results recompute: every stored exact match from the stored answers, every judged study has
its seeds, judges and arms, and no held-out number is a training number of its seed."""

import json
from pathlib import Path

import pytest

from cpo.demo.task import normalise, number_words

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.mark.parametrize("name", ["demo-test-3seeds-cpu.json", "demo-judges-cpu.json"])
def test_every_stored_exact_match_recomputes_from_the_answers(name):
    results = json.loads((RESULTS / name).read_text(encoding="utf-8"))
    lang = results["settings"]["lang"]
    for seed in results["seeds"]:
        truths = [normalise(number_words(n, lang)) for n in seed["eval_numbers"]]
        assert len(set(seed["eval_numbers"])) == len(truths) == 100
        for key, run in seed["runs"].items():
            hits = sum(normalise(a) == t for a, t in zip(run["answers"], truths))
            assert len(run["answers"]) == 100 and run["exact_match"] == hits / 100, (seed["seed"], key)


def test_the_judges_study_has_fresh_seeds_judges_arms_and_no_leak():
    results = json.loads((RESULTS / "demo-judges-cpu.json").read_text(encoding="utf-8"))
    settings = results["settings"]
    seeds = [s["seed"] for s in results["seeds"]]
    assert len(seeds) >= 5 and not set(seeds) & {0, 1, 2} and settings["eval_split"] == "test"
    assert len(settings["judges"]) >= 3 and "oracle" in settings["judges"]
    assert {"sft_chosen", "cpo", "arpo"} <= set(settings["arms"])
    for seed in results["seeds"]:
        expected = {"sft_ref", "sft_more_refs"} | {f"{a}@{j}" for a in settings["arms"] for j in settings["judges"]}
        assert set(seed["runs"]) == expected
        assert not set(seed["eval_numbers"]) & set(seed["train_numbers"])
        assert len(seed["train_numbers"]) == settings["sft_numbers"] + settings["pref_numbers"] + \
            settings["validation_numbers"]
        for judge, stats in seed["judges"].items():  # a noisy judge's accuracy is exactly its unflipped share
            if judge.startswith("noisy-"):
                assert abs(stats["pair_accuracy"] - (1 - stats["flipped"] / stats["pairs"])) < 1e-12
