"""``cpo demo --quick`` end to end on the real SmolLM2-135M-Instruct (a few minutes on 2 CPU cores), with two judges
and the ARPO and CPO-SimPO arms: every stage runs, the table is the one the answers give, the candidates and each
judge's pairs are written and consistent, and no held-out number is a training number."""

import json

import pytest
from helpers import smollm2_gguf

from cpo.cli import main
from cpo.demo.report import run_rows
from cpo.demo.task import check_answer, normalise, number_words


@pytest.mark.slow  # ten training runs of a 135M model: minutes of CPU
def test_quick_demo_end_to_end(tmp_path, capsys):
    smollm2_gguf()  # fails naming the package if the model is missing
    out_dir = tmp_path / "demo"
    assert main(["demo", "--quick", "--arpo", "--simpo", "--judge", "oracle", "--judge", "noisy-0.5", "--output_dir",
                 str(out_dir), "--seed", "0", "--disable_tqdm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model (1 seed, 10 test items each)"))
    results = json.loads((out_dir / "results.json").read_text())
    rows = run_rows(results["settings"])  # stage 1, more references, 4 arms x 2 judges
    assert len(rows) == 10 and [r.split(" | ")[0].removeprefix("| ") for r in lines[header + 2: header + 12]] == [
        label for _, label in rows]
    assert (out_dir / "table.md").read_text().splitlines() == lines[header: header + 12]
    for figure in ("comparison.png", "judges.png", "training_curves.png"):
        assert (out_dir / figure).read_bytes()[:4] == b"\x89PNG"
    assert any(line.startswith("  cpo@noisy-0.5 - sft_chosen@noisy-0.5: ") for line in lines)

    (seed,) = results["seeds"]
    numbers = seed["eval_numbers"]
    assert len(numbers) == 10 and results["settings"]["seed"] == 0 and not set(numbers) & set(seed["train_numbers"])
    assert set(seed["runs"]) == {k for k, _ in rows}
    for key, run in seed["runs"].items():  # the reported exact match is the one the answers give
        hits = [normalise(a) == normalise(number_words(n, "en")) for a, n in zip(run["answers"], numbers)]
        assert run["exact_match"] == sum(hits) / 10 and 0 <= run["chrf"] <= 100, key
    cands = [json.loads(x) for x in (out_dir / "seed0" / "candidates.jsonl").read_text().splitlines()]
    by_number = {c["number"]: c for c in cands}
    oracle = [json.loads(x) for x in (out_dir / "seed0" / "prefs-oracle.jsonl").read_text().splitlines()]
    noisy = [json.loads(x) for x in (out_dir / "seed0" / "prefs-noisy-0.5.jsonl").read_text().splitlines()]
    assert len(cands) == 16 and len(oracle) == seed["judges"]["oracle"]["pairs"] == len(noisy) > 0
    for p in oracle:  # chosen is the checker's best candidate (the reference included), rejected its worst
        row = by_number[p["number"]]
        scores = [check_answer(t, p["number"], "en") for t in [row["reference"], *row["candidates"]]]
        assert p["chosen_score"] == max(scores) > p["rejected_score"] == min(scores)
    flips = sum(a["chosen"] != b["chosen"] for a, b in zip(oracle, noisy))
    assert seed["judges"]["noisy-0.5"]["flipped"] == flips
    assert seed["judges"]["noisy-0.5"]["pair_accuracy"] == 1 - flips / len(noisy)
    for key, _ in rows[1:]:
        state = json.loads((out_dir / "seed0" / key.replace("@", "-") / "trainer_state.json").read_text())
        assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2]
    arpo = json.loads((out_dir / "seed0" / "arpo-oracle" / "trainer_state.json").read_text())
    assert all("arpo/gamma" in h for h in arpo["log_history"] if "loss" in h)
