"""Demo outputs: the mean +/- sd table, McNemar by hand, the pairs' statistics, comparison.png, the curves hand-off."""

import struct

import cpo.demo.report
from cpo.demo.report import comparison_figure, comparison_text, mcnemar, pairs_text, results_table, write_report

KEYS = ("sft_ref", "sft_more_refs", "sft_chosen", "cpo")


def run(em, chrf=90.0, pref=0.9, answers=()):
    return {"exact_match": em, "chrf": chrf, "preference_accuracy": pref, "answers": list(answers)}


def results(ems_by_seed=((0.5, 0.6, 0.7, 0.8), (0.7, 0.6, 0.7, 0.6))):
    seeds = []
    for k, ems in enumerate(ems_by_seed):
        seeds.append({"seed": k, "eval_numbers": [1, 2], "runs": {key: run(em) for key, em in zip(KEYS, ems)},
                      "pairs": {"prompts": 20, "pairs": 17, "skipped": {"tie": 3}, "reference_chosen": 12,
                                "reference_rejected": 1, "duplicates": 9, "flawed_references_chosen": 2},
                      "flaws": {"sft": 6, "prefs": 6}})
    return {"model": "Tiny", "settings": {"eval_split": "test", "lang": "en", "high": 99, "flaw_share": 0.3,
                                          "num_samples": 4, "temperature": 0.7, "include_greedy": True, "steps": 2,
                                          "batch_size": 4, "learning_rate": 1e-4, "beta": 1.0,
                                          "trainable_layers": 2},
            "seeds": seeds, "threads": 2, "load_seconds": 1.0}


def test_table_mean_and_sd_by_hand():
    lines = results_table(results()).splitlines()
    assert lines[0] == "| model (2 seeds, 2 test items each) | exact match % | chrF | preference accuracy % |"
    # SFT-ref: 50 and 70 -> mean 60.0, sample sd sqrt(((50-60)^2 + (70-60)^2) / 1) = 14.1
    assert lines[2] == "| SFT-ref (stage 1, flawed references) | 60.0 ± 14.1 | 90.0 ± 0.0 | 90.0 ± 0.0 |"
    assert lines[5] == "| + CPO (chosen vs rejected) | 70.0 ± 14.1 | 90.0 ± 0.0 | 90.0 ± 0.0 |"
    one = results(((0.5, 0.6, 0.7, 0.8),))
    assert results_table(one).splitlines()[2].endswith("| 50.0 | 90.0 | 90.0 |")


def test_mcnemar_by_hand():
    # 3 disagreements, all for b: P(X <= 0) = 1/8 for X ~ Bin(3, 1/2); two-sided p = 1/4.
    assert mcnemar([0, 0, 0, 1, 0], [1, 1, 1, 1, 0]) == {"a_only": 0, "b_only": 3, "p_value": 0.25}
    assert mcnemar([1] * 8, [0] * 6 + [1, 1])["p_value"] == 2 / 64  # 6 for a, none for b: 2 / 2^6
    assert mcnemar([1, 1, 0, 0], [0, 0, 1, 1])["p_value"] == 1.0  # P(X <= 2), Bin(4, 1/2) = 11/16, doubled, capped
    assert mcnemar([1, 0], [1, 0]) == {"a_only": 0, "b_only": 0, "p_value": 1.0}


def test_comparison_pools_the_seeds_item_by_item():
    res = results()
    words = {1: "one", 2: "two"}
    right = {"sft_ref": [(0, 0), (1, 0)], "sft_more_refs": [(0, 0), (0, 0)], "sft_chosen": [(1, 1), (1, 1)],
             "cpo": [(1, 1), (1, 0)]}
    for s, seed in enumerate(res["seeds"]):
        for key in KEYS:
            seed["runs"][key]["answers"] = [words[n] if ok else "zero" for n, ok in zip((1, 2), right[key][s])]
    text = comparison_text(res)
    assert "(4 held-out answers over all seeds)" in text
    assert "vs SFT-ref (stage 1, flawed references): 2 right only with CPO, 0 only with the baseline" in text
    assert "vs SFT on the chosen candidates: 0 right only with CPO, 1 only with the baseline (exact McNemar p = " \
           "1.000)" in text


def test_pairs_text():
    assert pairs_text(results()).splitlines()[0] == (
        "seed 0: 17 pairs from 20 prompts (3 ties, 0 other skips, 9 duplicate samples); the reference was chosen in 12 "
        "(flawed in 2) and rejected in 1; flawed references: 6 in stage 1, 6 among the preference prompts")


def test_comparison_png_and_curves_hand_off(tmp_path, monkeypatch):
    path = comparison_figure(results(), tmp_path / "comparison.png")
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1320, 396)  # 12 x 3.6 in, 110 dpi
    calls = []
    monkeypatch.setattr(cpo.demo.report, "plot_training_curves",
                        lambda dirs, out, labels=None: calls.append((dirs, out, labels)) or out)
    res = results()
    for seed in res["seeds"]:
        for key in KEYS:
            seed["runs"][key]["answers"] = ["one", "two"]
    text = write_report(res, tmp_path, 12.0)
    assert calls == [([str(tmp_path / "seed0" / k) for k in KEYS[1:]], str(tmp_path / "training_curves.png"),
                      ["SFT on the references", "SFT on the chosen candidates", "CPO (chosen vs rejected)"])]
    assert (tmp_path / "table.md").read_text().splitlines() == results_table(res).splitlines()
    assert "Wall time: 12 s (loading 1 s)." in text
