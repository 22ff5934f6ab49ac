"""``cpo demo --quick`` end to end on the real SmolLM2-135M-Instruct (about a minute on 2 CPU cores)."""

import json

from helpers import smollm2_gguf
from num2words import num2words

from cpo.cli import main
from cpo.demo.measure import normalise


def test_quick_demo_end_to_end(tmp_path, capsys):
    smollm2_gguf()  # fails naming the package if the model is missing
    out_dir = tmp_path / "demo"
    assert main(["demo", "--quick", "--output-dir", str(out_dir), "--seed", "0", "--no-progress"]) == 0

    lines = capsys.readouterr().out.splitlines()
    header = lines.index("| model | test items | exact match | preference accuracy |")
    rows = lines[header + 2 : header + 5]
    assert [r.split(" | ")[0] for r in rows] == ["| base (no training)", "| SFT (chosen only)",
                                                 "| CPO (chosen vs rejected)"]
    assert all(r.split(" | ")[1] == "10" for r in rows)  # the quick mode holds out 10 numbers
    assert (out_dir / "table.md").read_text().splitlines() == lines[header : header + 5]
    assert (out_dir / "comparison.png").read_bytes()[:4] == b"\x89PNG"

    results = json.loads((out_dir / "results.json").read_text())
    assert results["eval_items"] == 10 and results["settings"]["seed"] == 0
    for name in ("base", "sft", "cpo"):
        run_ = results["runs"][name]
        assert len(run_["answers"]) == 10 and 0.0 <= run_["preference_accuracy"] <= 1.0
    # The reported exact match is the one the answers give against num2words.
    truth = [num2words(n, lang="en") for n in results["eval_numbers"]]
    for name in ("base", "sft", "cpo"):
        hits = [normalise(a) == normalise(t) for a, t in zip(results["runs"][name]["answers"], truth)]
        assert results["runs"][name]["exact_match"] == sum(hits) / 10
    assert [ex["answer"] for ex in results["examples"]] == truth[:5]
    for name in ("sft", "cpo"):
        state = json.loads((out_dir / name / "trainer_state.json").read_text())
        steps = [h for h in state["log_history"] if "loss" in h]
        assert [h["step"] for h in steps] == [1, 2]
        assert all({"nll_loss", "rewards/accuracies", "rewards/margins"} <= h.keys() for h in steps)
