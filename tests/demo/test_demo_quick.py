"""``cpo demo --quick --simpo`` end to end on the real SmolLM2-135M-Instruct (a couple of minutes on 2 CPU cores): every
stage runs, the table is the one the answers give, the candidates and pairs are written and consistent."""

import json

from helpers import smollm2_gguf

from cpo.cli import main
from cpo.demo.report import ROWS
from cpo.demo.task import check_answer, normalise, number_words


def test_quick_demo_end_to_end(tmp_path, capsys):
    smollm2_gguf()  # fails naming the package if the model is missing
    out_dir = tmp_path / "demo"
    assert main(["demo", "--quick", "--simpo", "--output_dir", str(out_dir), "--seed", "0", "--disable_tqdm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model (1 seed, 10 test items each)"))
    labels = [label for _, label in ROWS]  # the four runs and, with --simpo, CPO-SimPO
    assert [r.split(" | ")[0].removeprefix("| ") for r in lines[header + 2: header + 7]] == labels
    assert (out_dir / "table.md").read_text().splitlines() == lines[header: header + 7]
    assert (out_dir / "comparison.png").read_bytes()[:4] == b"\x89PNG"

    results = json.loads((out_dir / "results.json").read_text())
    (seed,) = results["seeds"]
    numbers = seed["eval_numbers"]
    assert len(numbers) == 10 and results["settings"]["seed"] == 0
    for key, run in seed["runs"].items():  # the reported exact match is the one the answers give
        hits = [normalise(a) == normalise(number_words(n, "en")) for a, n in zip(run["answers"], numbers)]
        assert run["exact_match"] == sum(hits) / 10 and 0 <= run["chrf"] <= 100, key
    cands = [json.loads(x) for x in (out_dir / "seed0" / "candidates.jsonl").read_text().splitlines()]
    pairs = [json.loads(x) for x in (out_dir / "seed0" / "prefs.jsonl").read_text().splitlines()]
    assert len(cands) == 16 and len(pairs) == seed["pairs"]["pairs"] > 0
    by_number = {c["number"]: c for c in cands}
    for p in pairs:  # chosen is the checker's best candidate (the reference included), rejected its worst
        row = by_number[p["number"]]
        texts = [row["reference"], *row["candidates"]]
        scores = [check_answer(t, p["number"], "en") for t in texts]
        assert p["chosen_score"] == max(scores) > p["rejected_score"] == min(scores)
        assert p["chosen"][0]["content"] in [t.strip() for t in texts]
    for key in ("sft_ref", "sft_more_refs", "sft_chosen", "cpo", "cpo_simpo"):
        state = json.loads((out_dir / "seed0" / key / "trainer_state.json").read_text())
        assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2]
