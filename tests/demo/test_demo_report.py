"""Demo outputs: the markdown table, comparison.png, and the training-curves hand-off to cpo.plot."""

import struct

import cpo.demo.report
from cpo.demo.report import (
    comparison_figure,
    comparison_text,
    examples_text,
    paired_comparison,
    results_table,
    training_curves,
)


def results(n=40):
    return {
        "settings": {"eval_split": "test", "lang": "en", "seed": 3},
        "eval_items": n,
        "runs": {
            "base": {"exact_match": 0.0, "preference_accuracy": 0.9},
            "sft": {"exact_match": 0.5, "preference_accuracy": 0.95},
            "cpo": {"exact_match": 0.65, "preference_accuracy": 1.0},
        },
    }


def test_table_rows_by_hand():
    assert results_table(results()).splitlines() == [
        "| model | test items | exact match | preference accuracy |",
        "|---|---:|---:|---:|",
        "| base (no training) | 40 | 0/40 (0%) | 90% |",
        "| SFT (chosen only) | 40 | 20/40 (50%) | 95% |",
        "| CPO (chosen vs rejected) | 40 | 26/40 (65%) | 100% |",
    ]


def paired(sft_right: list[bool], cpo_right: list[bool]) -> dict:
    numbers = list(range(1, len(sft_right) + 1))
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight"][: len(numbers)]
    answer = lambda ok, w: w.capitalize() + "." if ok else "zero"  # noqa: E731  (normalised before comparing)
    return {"settings": {"lang": "en"}, "eval_numbers": numbers, "runs": {
        "sft": {"answers": [answer(ok, w) for ok, w in zip(sft_right, words)]},
        "cpo": {"answers": [answer(ok, w) for ok, w in zip(cpo_right, words)]},
    }}


def test_paired_comparison_by_hand():
    # 3 disagreements, all for SFT: P(X <= 0) = 1/8 for X ~ Bin(3, 1/2); two-sided p = 1/4.
    assert paired_comparison(paired([1, 1, 1, 1, 0], [0, 0, 0, 1, 0])) == {"sft_only": 3, "cpo_only": 0,
                                                                          "p_value": 0.25}
    # 6 for CPO and none for SFT: p = 2 / 64.
    assert paired_comparison(paired([0] * 6 + [1, 1], [1] * 8))["p_value"] == 2 / 64
    # 2 each way: P(X <= 2) for Bin(4, 1/2) = 11/16, doubled and capped at 1.
    assert paired_comparison(paired([1, 1, 0, 0], [0, 0, 1, 1]))["p_value"] == 1.0
    assert paired_comparison(paired([1, 0], [1, 0])) == {"sft_only": 0, "cpo_only": 0, "p_value": 1.0}
    assert "3 held-out items only CPO gets right, 1 only SFT (exact McNemar p = 0.62" in comparison_text(
        paired([1, 0, 0, 0, 1], [0, 1, 1, 1, 1]))


def test_examples_marks_answers_after_normalising():
    res = {"examples": [{"prompt": "Write 68 in English words.", "answer": "sixty-eight", "base": "68 is a number",
                         "sft": "six hundred and eighty", "cpo": " Sixty-eight."}]}
    assert examples_text(res).splitlines() == [
        "Write 68 in English words.  (correct: sixty-eight)",
        "  x  base '68 is a number'",
        "  x  SFT  'six hundred and eighty'",
        "  ok CPO  'Sixty-eight.'",
    ]


def test_comparison_png(tmp_path):
    path = comparison_figure(results(), tmp_path / "comparison.png")
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (960, 408)  # 8 x 3.4 inches at 120 dpi


def test_training_curves_calls_cpo_plot_with_its_contract(tmp_path, monkeypatch):
    calls = []

    def plot_training_curves(run_dirs, out_path, labels=None):
        calls.append((run_dirs, out_path, labels))
        return out_path

    monkeypatch.setattr(cpo.demo.report, "plot_training_curves", plot_training_curves)
    out = training_curves([tmp_path / "sft", tmp_path / "cpo"], tmp_path / "curves.png", ["SFT", "CPO"])
    assert calls == [([str(tmp_path / "sft"), str(tmp_path / "cpo")], str(tmp_path / "curves.png"), ["SFT", "CPO"])]
    assert out == str(tmp_path / "curves.png")
