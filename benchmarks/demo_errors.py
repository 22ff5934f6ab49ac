"""What kind of mistakes each demo model makes: of its wrong held-out answers, how many have the shape of a flaw the
training references carried (a dropped "and", a missing hyphen, a neighbouring number: :func:`cpo.demo.task.flaw_shape`)
and how many are other errors (mostly digits copied wrong: 507 -> "five hundred and seventy-five").

    PYTHONPATH=src python benchmarks/demo_errors.py benchmarks/results/demo-test-3seeds-cpu.json [--markdown]

Reads the stored answers of a ``cpo demo`` results file (any number of seeds); prints one JSON line per model (its
run key), summed over the seeds, and with ``--markdown`` the table docs/demo.md shows.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from cpo.demo.task import FLAW_KINDS, flaw_shape, normalise, number_words


def error_kinds(results: dict) -> dict[str, dict]:
    """Per run key, over every seed's held-out answers: ``answers``, ``wrong``, ``flaw_shaped`` (and by kind) and
    ``other``."""
    lang, high = results["settings"]["lang"], results["settings"]["high"]
    out: dict[str, dict] = {}
    for seed in results["seeds"]:
        for key, run in seed["runs"].items():
            row = out.setdefault(key, {"answers": 0, "wrong": 0, "flaw_shaped": 0, "other": 0, "by_kind": Counter()})
            for answer, number in zip(run["answers"], seed["eval_numbers"]):
                row["answers"] += 1
                if normalise(answer) == normalise(number_words(number, lang)):
                    continue
                row["wrong"] += 1
                kind = flaw_shape(answer, number, lang, high)
                row["flaw_shaped" if kind else "other"] += 1
                if kind:
                    row["by_kind"][kind] += 1
    return {k: {**v, "by_kind": {kind: v["by_kind"][kind] for kind in FLAW_KINDS}} for k, v in out.items()}


def markdown(kinds: dict[str, dict]) -> str:
    lines = ["| model | answers | wrong | flaw-shaped (no \"and\" / no hyphen / neighbour) | other |",
             "|---|---:|---:|---:|---:|"]
    for key, k in kinds.items():
        by = " / ".join(str(k["by_kind"][kind]) for kind in FLAW_KINDS)
        lines.append(f"| {key} | {k['answers']} | {k['wrong']} | {k['flaw_shaped']} ({by}) | {k['other']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a cpo demo results.json")
    parser.add_argument("--markdown", action="store_true", help="also print the markdown table")
    args = parser.parse_args()
    with open(args.results, encoding="utf-8") as f:
        kinds = error_kinds(json.load(f))
    for key, k in kinds.items():
        print(json.dumps({"results": args.results, "run": key, **k}))
    if args.markdown:
        print(markdown(kinds))


if __name__ == "__main__":
    main()
