"""The demo task generator: answers per num2words, near misses that differ by one digit, disjoint splits."""

import random

import pytest
from num2words import num2words

from cpo.demo.task import (
    DEMO_LANGUAGES,
    build_task,
    checker_scores,
    flaw_kinds,
    flaw_shape,
    flawed_references,
    flawed_words,
    near_miss_candidates,
    normalise,
    pick_near_miss,
    prompt_number,
    prompt_text,
    split_numbers,
    typo_candidates,
)
from cpo.mt.prompts import language_name


def digits_changed(a: int, b: int, width: int = 3) -> int:
    return sum(x != y for x, y in zip(f"{a:0{width}d}", f"{b:0{width}d}"))


@pytest.mark.parametrize("lang", sorted(DEMO_LANGUAGES))
def test_chosen_is_num2words_and_rejected_is_another_numbers_words(lang):
    task = build_task(lang, high=999, test=50, validation=50, seed=3)
    for pairs in task.values():
        for p in pairs:
            assert p.chosen == num2words(p.number, lang=lang)
            assert p.rejected == num2words(p.rejected_number, lang=lang)
            assert p.rejected != p.chosen
            assert p.prompt == f"Write {p.number} in {language_name(lang)} words."


def test_known_answers_by_hand():
    # The example, and its English twin, spelled out by hand.
    from cpo.demo.task import Pair

    assert Pair(347, 346, "de").chosen == "dreihundertsiebenundvierzig"
    assert Pair(347, 346, "de").rejected == "dreihundertsechsundvierzig"
    assert Pair(347, 357, "en").chosen == "three hundred and forty-seven"
    assert Pair(347, 357, "en").rejected == "three hundred and fifty-seven"


def test_digit_near_misses_change_one_digit_when_the_split_allows():
    task = build_task("en", high=999, test=100, validation=100, seed=0, near_misses="digit")
    changed = [digits_changed(p.number, p.rejected_number) for p in task["train"]]
    assert all(c == 1 for c in changed)  # 800 train numbers: every one has a one-digit neighbour among them
    for name in ("validation", "test"):  # 100 numbers: a few fall back to the closest number of the split
        changed = [digits_changed(p.number, p.rejected_number) for p in task[name]]
        assert sum(c == 1 for c in changed) >= 0.9 * len(changed)


def test_near_miss_candidates_by_hand():
    # 347: first digit -> 047..947 without 347, then 307..397, then 340..349.
    cands = near_miss_candidates(347, width=3)
    assert len(cands) == 27 and 347 not in cands
    assert cands[:9] == [47, 147, 247, 447, 547, 647, 747, 847, 947]
    assert {346, 348, 357, 337, 447, 247} <= set(cands)
    assert all(digits_changed(347, c) == 1 for c in cands)
    with pytest.raises(ValueError):
        near_miss_candidates(1000, width=3)


def test_typo_candidates_by_hand():
    # 105 by hand. Insertion at each of the 4 places: d105 (d >= 1), 1d05, 10d5, 105d.
    insertion = (
        {1105, 2105, 3105, 4105, 5105, 6105, 7105, 8105, 9105}
        | {1005, 1105, 1205, 1305, 1405, 1505, 1605, 1705, 1805, 1905}
        | {1005, 1015, 1025, 1035, 1045, 1055, 1065, 1075, 1085, 1095}
        | {1050, 1051, 1052, 1053, 1054, 1055, 1056, 1057, 1058, 1059}
    )
    assert typo_candidates(105) == {
        # "005" (the 1 changed to 0) has leading zeros: not a way of writing a number
        "substitution": [100, 101, 102, 103, 104, 106, 107, 108, 109, 115, 125, 135, 145, 155, 165, 175, 185,
                         195, 205, 305, 405, 505, 605, 705, 805, 905],
        "deletion": [10, 15],  # "05" is not how 5 is written
        "insertion": sorted(insertion),
        "transposition": [150],  # "015" has a leading zero
    }
    assert typo_candidates(0) == {"substitution": list(range(1, 10)), "deletion": [],
                                  "insertion": [10, 20, 30, 40, 50, 60, 70, 80, 90], "transposition": []}
    assert typo_candidates(44)["transposition"] == []  # swapping equal digits is no typo


def test_typo_near_misses_mix_the_edit_kinds():
    task = build_task("en", high=999, test=100, validation=100, seed=0, near_misses="typo")
    kinds = []
    for p in task["train"]:
        found = [k for k, v in typo_candidates(p.number).items() if p.rejected_number in v]
        assert found, (p.number, p.rejected_number)  # 800 train numbers: every near miss is a typo
        kinds.append(found[0])
    for kind in ("substitution", "deletion", "transposition"):  # about a third each for three-digit numbers
        assert kinds.count(kind) > 0.2 * len(kinds)
    assert kinds.count("insertion") > 0  # only one- and two-digit numbers have insertions inside 0..999


def test_pick_near_miss_falls_back_to_closest_and_fails_alone():
    rng = random.Random(0)
    assert pick_near_miss(500, {500, 10, 530}, 3, "en", rng) == 530  # 530 is one digit away
    assert pick_near_miss(500, {500, 10, 623}, 3, "en", rng) == 623  # none is: the closest
    with pytest.raises(ValueError, match="no other number"):
        pick_near_miss(500, {500}, 3, "en", rng)
    assert pick_near_miss(500, {500, 50, 623}, 3, "en", rng, kind="typo") == 50  # deletion
    assert pick_near_miss(500, {500, 530, 623}, 3, "en", rng, kind="typo") == 530  # substitution
    with pytest.raises(ValueError, match="near-miss kind"):
        pick_near_miss(500, {500, 530}, 3, "en", rng, kind="swap")


@pytest.mark.parametrize("seed, kind", [(0, "typo"), (1, "typo"), (7, "digit")])
def test_splits_share_no_number(seed, kind):
    task = build_task("fr", high=999, test=100, validation=100, seed=seed, near_misses=kind)
    used = {name: {n for p in pairs for n in (p.number, p.rejected_number)} for name, pairs in task.items()}
    assert not used["train"] & used["test"]
    assert not used["train"] & used["validation"]
    assert not used["validation"] & used["test"]
    assert {len({p.number for p in task[s]}) for s in ("test", "validation")} == {100}
    assert len(task["train"]) == 800
    # Together the splits cover 0..999 exactly once.
    assert sorted(n for s in task.values() for n in {p.number for p in s}) == list(range(1000))


def test_split_is_seeded_and_seed_matters():
    a = split_numbers(999, {"test": 100, "validation": 100}, seed=0)
    assert a == split_numbers(999, {"test": 100, "validation": 100}, seed=0)
    assert a["test"] != split_numbers(999, {"test": 100, "validation": 100}, seed=1)["test"]
    with pytest.raises(ValueError, match="fewer than 2"):
        split_numbers(10, {"test": 5, "validation": 5}, seed=0)


def test_pairs_per_number_gives_distinct_near_misses():
    task = build_task("es", high=999, test=100, validation=100, seed=0, pairs_per_number=2)
    by_number = {}
    for p in task["train"]:
        by_number.setdefault(p.number, []).append(p.rejected_number)
    assert len(by_number) == 800 and all(len(set(r)) == 2 for r in by_number.values())


def test_row_is_a_conversational_preference_row():
    p = build_task("en", seed=0)["test"][0]
    assert p.row() == {
        "prompt": [{"role": "user", "content": p.prompt}],
        "chosen": [{"role": "assistant", "content": num2words(p.number, lang="en")}],
        "rejected": [{"role": "assistant", "content": num2words(p.rejected_number, lang="en")}],
    }


def test_unknown_language_names_the_choices():
    with pytest.raises(ValueError, match="use one of en, de"):
        prompt_text(3, "xx")


def test_flaws_by_hand():
    rng = random.Random(0)
    assert flaw_kinds(347, "en") == ["no_and", "no_hyphen", "neighbour"]
    assert flaw_kinds(300, "en") == ["neighbour"] and flaw_kinds(21, "en") == ["no_hyphen", "neighbour"]
    assert flawed_words(347, "en", "no_and", 999, rng) == "three hundred forty-seven"
    assert flawed_words(347, "en", "no_hyphen", 999, rng) == "three hundred and forty seven"
    assert flawed_words(347, "en", "neighbour", 999, rng) in ("three hundred and forty-six",
                                                              "three hundred and forty-eight")
    assert flawed_words(0, "en", "neighbour", 999, rng) == "one"  # -1 is out of range
    with pytest.raises(ValueError, match="Unknown flaw"):
        flawed_words(3, "en", "typo", 9, rng)


def test_flawed_references_exact_share_seeded():
    numbers = list(range(100, 140))
    refs = flawed_references(numbers, "en", 0.3, 999, random.Random(5))
    flawed = [r for r in refs if r.flaw is not None]
    assert len(flawed) == 12 and [r.number for r in refs] == numbers
    assert all(normalise(r.text) != normalise(num2words(r.number)) for r in flawed)
    assert all(r.text == num2words(r.number) for r in refs if r.flaw is None)
    assert refs == flawed_references(numbers, "en", 0.3, 999, random.Random(5))
    assert refs != flawed_references(numbers, "en", 0.3, 999, random.Random(6))


def test_checker_scores_right_answers_100_and_grades_the_rest():
    prompt = [{"role": "user", "content": "Write 347 in English words."}]
    assert prompt_number(prompt) == (347, "en") and prompt_number("Write 5 in German words.") == (5, "de")
    scores = checker_scores([prompt] * 4, ["Three hundred and forty-seven.", "three hundred forty-seven",
                                           "three hundredandforty-seven", "banana"], None)
    assert scores[0] == 100.0
    assert 50 < scores[1] < 99.0 and scores[2] == 99.0  # chrF ignores spaces: 100 capped at 99 (it is wrong)
    assert scores[3] < 10
    with pytest.raises(ValueError, match="Not a prompt of the demo task"):
        prompt_number("What is 2 + 2?")


def test_flaw_shape_classifies_wrong_answers_by_hand():
    assert flaw_shape("three hundred forty-seven", 347, "en") == "no_and"
    assert flaw_shape("Three hundred and forty seven.", 347, "en") == "no_hyphen"
    assert flaw_shape("three hundred and forty-six", 347, "en") == "neighbour"
    assert flaw_shape("three hundred and forty-seven", 347, "en") is None  # right, not a flaw
    assert flaw_shape("five hundred and seventy-five", 507, "en") is None  # a digit-copying error
    assert flaw_shape("one thousand", 999, "en", high=999) is None  # 1000 is outside 0..high


def test_the_demo_modules_doctests():
    import doctest

    import cpo.demo.judges
    import cpo.demo.stats
    import cpo.demo.task

    for module in (cpo.demo.task, cpo.demo.judges, cpo.demo.stats):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
