"""The demo's outputs: the table (mean +/- sd over seeds), CPO against each baseline item by item (exact McNemar),
the candidates' statistics, a few answers, ``comparison.png`` and the stage-2 training curves."""

from __future__ import annotations

import statistics
from math import comb
from pathlib import Path

from ..extras import require
from ..files import atomic_write
from ..mt.prompts import language_name
from ..plot import plot_training_curves
from .pipeline import STAGE1, STAGE2
from .task import normalise, number_words

ROWS = (STAGE1, *((key, f"+ {label}") for key, (label, _, _) in STAGE2.items()))
METRICS = (("exact_match", "exact match", 100.0), ("chrf", "chrF", 1.0), ("preference_accuracy",
                                                                          "preference accuracy", 100.0))


def _rows(results: dict) -> list[tuple[str, str]]:
    return [(k, label) for k, label in ROWS if k in results["seeds"][0]["runs"]]


def _mean_sd(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {statistics.stdev(values):.1f}"


def results_table(results: dict) -> str:
    """A markdown table: one row per model, exact match (%), chrF and preference accuracy (%) on the held-out
    items, as mean ± sd over the seeds (the value itself for one seed)."""
    seeds = results["seeds"]
    n, split = len(seeds[0]["eval_numbers"]), results["settings"]["eval_split"]
    lines = [f"| model ({len(seeds)} seed{'s' * (len(seeds) > 1)}, {n} {split} items each) | exact match % | "
             "chrF | preference accuracy % |", "|---|---:|---:|---:|"]
    for key, label in _rows(results):
        cells = [_mean_sd([s["runs"][key][m] * scale for s in seeds]) for m, _, scale in METRICS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mcnemar(a_right: list[bool], b_right: list[bool]) -> dict:
    """Item-by-item comparison of two models on the same items: how many only ``a`` gets right, only ``b``, and
    the exact two-sided McNemar p-value (binomial with p = 1/2 over the disagreements; 1.0 when there are none)."""
    a_only = sum(a and not b for a, b in zip(a_right, b_right))
    b_only = sum(b and not a for a, b in zip(a_right, b_right))
    n = a_only + b_only
    tail = sum(comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2**n
    return {"a_only": a_only, "b_only": b_only, "p_value": min(1.0, 2 * tail)}


def correct(results: dict, key: str) -> list[bool]:
    """Whether each held-out answer of model ``key`` is right, over all seeds (seed by seed, item by item)."""
    lang = results["settings"]["lang"]
    return [normalise(a) == normalise(number_words(n, lang)) for s in results["seeds"]
            for a, n in zip(s["runs"][key]["answers"], s["eval_numbers"])]


def comparison_text(results: dict) -> str:
    """CPO against each baseline, item by item over every seed's held-out items, with exact McNemar p-values."""
    cpo = correct(results, "cpo")
    lines = [f"CPO against each baseline, item by item ({len(cpo)} held-out answers over all seeds):"]
    for key, label in _rows(results):
        if key in ("cpo", "cpo_simpo"):
            continue
        c = mcnemar(cpo, correct(results, key))
        lines.append(f"  vs {label.removeprefix('+ ')}: {c['a_only']} right only with CPO, {c['b_only']} only with "
                     f"the baseline (exact McNemar p = {c['p_value']:.3f})")
    return "\n".join(lines)


def pairs_text(results: dict) -> str:
    """What the candidates gave, per seed: pairs, ties, how often the reference was chosen or rejected."""
    lines = []
    for s in results["seeds"]:
        p = s["pairs"]
        ties = p["skipped"].get("tie", 0)
        lines.append(f"seed {s['seed']}: {p['pairs']} pairs from {p['prompts']} prompts ({ties} ties, "
                     f"{sum(p['skipped'].values()) - ties} other skips, {p['duplicates']} duplicate samples); the "
                     f"reference was chosen in {p['reference_chosen']} (flawed in {p['flawed_references_chosen']}) "
                     f"and rejected in {p['reference_rejected']}; flawed references: {s['flaws']['sft']} in stage 1, "
                     f"{s['flaws']['prefs']} among the preference prompts")
    return "\n".join(lines)


def examples_text(results: dict, count: int = 4) -> str:
    """A few held-out prompts of the first seed with each model's greedy answer, marked right (ok) or wrong (x)."""
    seed, lang = results["seeds"][0], results["settings"]["lang"]
    lines = []
    for i, number in enumerate(seed["eval_numbers"][:count]):
        truth = number_words(number, lang)
        lines.append(f"Write {number} in {language_name(lang)} words.  (correct: {truth})")
        for key, label in _rows(results):
            answer = seed["runs"][key]["answers"][i]
            mark = "ok" if normalise(answer) == normalise(truth) else "x "
            lines.append(f"  {mark} {label.removeprefix('+ ').split(' (')[0]:<32} {answer.strip()[:60]!r}")
    return "\n".join(lines)


def comparison_figure(results: dict, out_path: Path) -> Path:
    """Bar charts of exact match, chrF and preference accuracy per model (mean over seeds, sd as error bars)."""
    matplotlib = require("matplotlib", "demo", "cpo demo's figure")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(results)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (metric, title, scale) in zip(axes, METRICS):
        values = [[s["runs"][k][metric] * scale for s in results["seeds"]] for k, _ in rows]
        means = [statistics.fmean(v) for v in values]
        sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        bars = ax.bar(range(len(rows)), means, yerr=sds, capsize=3, color=["#9e9e9e", "#8172b3", "#4c72b0",
                                                                          "#dd8452", "#55a868"][: len(rows)])
        ax.bar_label(bars, labels=[f"{m:.1f}" for m in means], padding=2, fontsize=8)
        ax.set_xticks(range(len(rows)), [label.removeprefix("+ ").split(" (")[0] for _, label in rows],
                      rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0, 112)
        ax.grid(axis="y", alpha=0.3)
    s = results["settings"]
    fig.suptitle(f"{results['model']}, numbers in {language_name(s['lang'])} words, {len(results['seeds'])} seed(s), "
                 f"{s['eval_split']} split", fontsize=10)
    fig.tight_layout()
    with atomic_write(out_path, binary=True) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return Path(out_path)


def write_report(results: dict, out_dir: Path, seconds: float) -> str:
    """Write ``table.md``, ``comparison.png`` and ``training_curves.png`` (the first seed's stage-2 runs) to
    ``out_dir``; returns the text to print."""
    table = results_table(results)
    with atomic_write(out_dir / "table.md") as f:
        f.write(table + "\n")
    figure = comparison_figure(results, out_dir / "comparison.png")
    first = out_dir / f"seed{results['seeds'][0]['seed']}"
    keys = [k for k, _ in _rows(results) if k != "sft_ref"]
    curves = plot_training_curves([str(first / k) for k in keys], str(out_dir / "training_curves.png"),
                                  labels=[dict(ROWS)[k].removeprefix("+ ") for k in keys])
    s = results["settings"]
    header = (f"{results['model']}, numbers 0-{s['high']} in {language_name(s['lang'])} words; {s['flaw_share']:.0%} "
              f"of training references flawed; {s['num_samples']} samples at temperature {s['temperature']}"
              f"{' + greedy' if s['include_greedy'] else ''}; every run {s['steps']} steps x {s['batch_size']}, lr "
              f"{s['learning_rate']:g}, beta {s['beta']:g}, top {s['trainable_layers']} layers; "
              f"{results['threads']} threads:")
    return "\n\n".join(["", header, table, comparison_text(results), pairs_text(results), examples_text(results),
                        f"Figures: {figure}, {curves}; details: {out_dir / 'results.json'}\n"
                        f"Wall time: {seconds:.0f} s (loading {results['load_seconds']:.0f} s)."])
