"""Demo outputs: the table, the per-seed differences with intervals, the judges' statistics, the figures, the curves."""

import struct

import cpo.demo.report
from cpo.demo.report import (
    comparison_figure,
    comparison_text,
    differences,
    judges_figure,
    pairs_text,
    results_table,
    run_rows,
    write_report,
)

KEYS = ("sft_ref", "sft_more_refs", "sft_chosen@oracle", "cpo@oracle")


def run(em, chrf=90.0, pref=0.9, answers=()):
    return {"exact_match": em, "chrf": chrf, "preference_accuracy": pref, "answers": list(answers)}


def judge(name="oracle", accuracy=1.0):
    return {"judge": name, "prompts": 20, "pairs": 17, "skipped": {"tie": 3}, "reference_chosen": 12,
            "reference_rejected": 1, "flawed_references_chosen": 2, "flipped": 0, "chosen_correct": 0.94,
            "pair_accuracy": accuracy}


def results(ems_by_seed=((0.5, 0.6, 0.7, 0.8), (0.7, 0.6, 0.7, 0.6)), keys=KEYS, judges=("oracle",)):
    seeds = []
    for k, ems in enumerate(ems_by_seed):
        seeds.append({"seed": k, "eval_numbers": [1, 2], "train_numbers": [3, 4],
                      "runs": {key: run(em) for key, em in zip(keys, ems)}, "duplicates": 9,
                      "judges": {j: judge(j, 1.0 - 0.2 * i) for i, j in enumerate(judges)},
                      "flaws": {"sft": 6, "prefs": 6}})
    return {"model": "Tiny", "settings": {"eval_split": "test", "lang": "en", "high": 99, "flaw_share": 0.3,
                                          "num_samples": 4, "temperature": 0.7, "include_greedy": True, "steps": 2,
                                          "batch_size": 4, "learning_rate": 1e-4, "beta": 1.0,
                                          "trainable_layers": 2, "arms": ["sft_chosen", "cpo"],
                                          "judges": list(judges)},
            "seeds": seeds, "threads": 2, "load_seconds": 1.0}


def test_table_mean_and_sd_by_hand():
    lines = results_table(results()).splitlines()
    assert lines[0] == "| model (2 seeds, 2 test items each) | exact match % | chrF | preference accuracy % |"
    # SFT-ref: 50 and 70 -> mean 60.0, sample sd sqrt(((50-60)^2 + (70-60)^2) / 1) = 14.1
    assert lines[2] == "| SFT-ref (stage 1, flawed references) | 60.0 ± 14.1 | 90.0 ± 0.0 | 90.0 ± 0.0 |"
    assert lines[5] == "| + CPO (chosen vs rejected) [oracle] | 70.0 ± 14.1 | 90.0 ± 0.0 | 90.0 ± 0.0 |"
    one = results(((0.5, 0.6, 0.7, 0.8),))
    assert results_table(one).splitlines()[2].endswith("| 50.0 | 90.0 | 90.0 |")


def test_run_rows_order_stage1_more_refs_then_arms_per_judge():
    settings = {"judges": ["oracle", "noisy-0.2"], "arms": ["sft_chosen", "cpo", "arpo"]}
    assert [k for k, _ in run_rows(settings)] == [
        "sft_ref", "sft_more_refs", "sft_chosen@oracle", "cpo@oracle", "arpo@oracle", "sft_chosen@noisy-0.2",
        "cpo@noisy-0.2", "arpo@noisy-0.2"]


def test_differences_per_seed_interval_and_pooled_mcnemar():
    # exact match per seed (sft_ref, more refs, sft_chosen, cpo): CPO - SFT-chosen = +10, -10, +30 points
    res = results(((0.5, 0.6, 0.6, 0.7), (0.7, 0.6, 0.7, 0.6), (0.5, 0.5, 0.5, 0.8)))
    words = {1: "one", 2: "two"}
    right = {"sft_ref": [(0, 0), (1, 0), (1, 0)], "sft_more_refs": [(0, 0), (0, 0), (1, 0)],
             "sft_chosen@oracle": [(1, 1), (1, 1), (1, 0)], "cpo@oracle": [(1, 1), (1, 0), (1, 1)]}
    for s, seed in enumerate(res["seeds"]):
        for key in KEYS:
            seed["runs"][key]["answers"] = [words[n] if ok else "zero" for n, ok in zip((1, 2), right[key][s])]
    d = {(x["a"], x["b"]): x for x in differences(res)}
    assert set(d) == {("cpo@oracle", "sft_chosen@oracle"), ("cpo@oracle", "sft_more_refs"), ("cpo@oracle", "sft_ref")}
    x = d["cpo@oracle", "sft_chosen@oracle"]
    # mean 10, sd = sqrt(((0)^2 + (-20)^2 + 20^2) / 2) = 20; half width t(0.975, 2) * 20 / sqrt(3) = 4.3027 * 11.547
    assert all(abs(a - b) < 1e-9 for a, b in zip(x["differences"], [10.0, -10.0, 30.0]))
    assert abs(x["mean"] - 10.0) < 1e-9 and abs(x["sd"] - 20.0) < 1e-9
    assert abs((x["high"] - x["mean"]) - 4.302653 * 20 / 3 ** 0.5) < 1e-4 and x["outcome"] == "no difference"
    # pooled: cpo right only on seed 2's item 2; sft_chosen right only on seed 1's item 2: 1 against 1
    assert x["mcnemar"] == {"a_only": 1, "b_only": 1, "p_value": 1.0}
    text = comparison_text(res)
    assert "cpo@oracle - sft_chosen@oracle: +10.0 [-39.7, +59.7] (no difference); 1 right only with cpo@oracle, 1 " \
           "only with sft_chosen@oracle (p = 1.000)" in text


def test_pairs_text():
    lines = pairs_text(results(judges=("oracle", "chrf-ref"))).splitlines()
    assert lines[0] == "seed 0: 9 duplicate samples; flawed references: 6 in stage 1, 6 among the preference prompts"
    assert lines[2] == ("  chrf-ref: 17 pairs from 20 prompts (3 ties, 0 other skips, 0 flipped); chosen right 94%, "
                        "pair accuracy 80%; the reference was chosen in 12 (flawed in 2) and rejected in 1")


def test_judges_figure(tmp_path):
    keys = ("sft_ref", "sft_more_refs", "sft_chosen@oracle", "cpo@oracle", "sft_chosen@noisy-0.2", "cpo@noisy-0.2")
    res = results(((0.5, 0.6, 0.7, 0.8, 0.6, 0.7), (0.7, 0.6, 0.7, 0.6, 0.5, 0.6)), keys, ("oracle", "noisy-0.2"))
    head = judges_figure(res, tmp_path / "judges.png").read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1320, 484)  # 12 x 4.4 in


def test_comparison_png_and_curves_hand_off(tmp_path, monkeypatch):
    path = comparison_figure(results(), tmp_path / "comparison.png")
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1320, 418)  # 12 x 3.8 in, 110 dpi
    calls = []
    monkeypatch.setattr(cpo.demo.report, "plot_training_curves",
                        lambda dirs, out, labels=None: calls.append((dirs, out, labels)) or out)
    res = results()
    for seed in res["seeds"]:
        for key in KEYS:
            seed["runs"][key]["answers"] = ["one", "two"]
    text = write_report(res, tmp_path, 12.0)
    assert calls == [([str(tmp_path / "seed0" / k.replace("@", "-")) for k in KEYS[1:]],
                      str(tmp_path / "training_curves.png"),
                      ["SFT on the references", "SFT on the chosen candidates [oracle]", "CPO [oracle]"])]
    assert (tmp_path / "table.md").read_text().splitlines() == results_table(res).splitlines()
    assert "Wall time: 12 s (loading 1 s)." in text
