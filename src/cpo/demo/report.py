"""The demo's outputs: the table (mean +/- sd over seeds), each preference arm against each baseline (the per-seed
paired difference with its interval over seeds, and item by item with exact McNemar), what each judge made of the
candidates, a few answers, ``comparison.png``, ``judges.png`` and the stage-2 training curves."""

from __future__ import annotations

import statistics
from pathlib import Path

from ..extras import require
from ..files import atomic_write
from ..mt.prompts import language_name
from ..plot import plot_training_curves
from .pipeline import ARMS, MORE_REFS, STAGE1, run_key
from .stats import mcnemar, mean_interval, outcome, paired_difference
from .task import normalise, number_words

METRICS = (("exact_match", "exact match", 100.0), ("chrf", "chrF", 1.0), ("preference_accuracy",
                                                                          "preference accuracy", 100.0))
PREFERENCE_ARMS = ("cpo", "arpo", "cpo_simpo")  # the arms with a rejected side, set against the SFT baselines
COLOURS = {STAGE1[0]: "#9e9e9e", MORE_REFS[0]: "#8172b3", "sft_chosen": "#4c72b0", "cpo": "#dd8452",
           "arpo": "#55a868", "cpo_simpo": "#c44e52"}


def run_rows(settings: dict) -> list[tuple[str, str]]:
    """``(run key, label)`` of every model of a demo run, in table order: stage 1, more references, then each arm
    on each judge's pairs."""
    rows = [STAGE1, (MORE_REFS[0], f"+ {MORE_REFS[1]}")]
    for judge in settings["judges"]:
        rows += [(run_key(arm, judge), f"+ {ARMS[arm][0]} [{judge}]") for arm in settings["arms"]]
    return rows


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
    for key, label in run_rows(results["settings"]):
        cells = [_mean_sd([s["runs"][key][m] * scale for s in seeds]) for m, _, scale in METRICS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def correct(results: dict, key: str) -> list[bool]:
    """Whether each held-out answer of model ``key`` is right, over all seeds (seed by seed, item by item)."""
    lang = results["settings"]["lang"]
    return [normalise(a) == normalise(number_words(n, lang)) for s in results["seeds"]
            for a, n in zip(s["runs"][key]["answers"], s["eval_numbers"])]


def comparisons(results: dict) -> list[tuple[str, str]]:
    """``(a, b)`` run keys of every headline comparison: each preference arm against SFT on the chosen candidates
    of its judge, SFT on the references and SFT-ref; and ARPO against CPO."""
    out, arms = [], results["settings"]["arms"]
    for judge in results["settings"]["judges"]:
        for arm in (a for a in PREFERENCE_ARMS if a in arms):
            baselines = [run_key("sft_chosen", judge)] * ("sft_chosen" in arms) + [MORE_REFS[0], STAGE1[0]]
            baselines += [run_key("cpo", judge)] * (arm == "arpo" and "cpo" in arms)
            out += [(run_key(arm, judge), b) for b in baselines]
    return out


def differences(results: dict) -> list[dict]:
    """Per comparison of :func:`comparisons`: the per-seed paired difference of exact match in points, with its 95%
    t interval over seeds and :func:`~cpo.demo.stats.outcome`, and the pooled exact McNemar test."""
    out = []
    for a, b in comparisons(results):
        diff = paired_difference([s["runs"][a]["exact_match"] * 100 for s in results["seeds"]],
                                 [s["runs"][b]["exact_match"] * 100 for s in results["seeds"]])
        out.append({"a": a, "b": b, **diff, "outcome": outcome(diff), "mcnemar": mcnemar(correct(results, a),
                                                                                        correct(results, b))})
    return out


def comparison_text(results: dict) -> str:
    """Each preference arm against each baseline: the mean per-seed difference of exact match with its 95% interval
    over seeds (the headline), then the items only one of them gets right over all seeds, with exact McNemar
    p-values (secondary)."""
    n = len(results["seeds"])
    lines = [f"Exact match, per-seed paired difference (points; mean and 95% t interval over {n} seed(s)), and item "
             "by item over all seeds (exact McNemar):"]
    for d in differences(results):
        interval = "" if d["low"] is None else f" [{d['low']:+.1f}, {d['high']:+.1f}]"
        m = d["mcnemar"]
        lines.append(f"  {d['a']} - {d['b']}: {d['mean']:+.1f}{interval} ({d['outcome']}); {m['a_only']} right only "
                     f"with {d['a']}, {m['b_only']} only with {d['b']} (p = {m['p_value']:.3f})")
    return "\n".join(lines)


def pairs_text(results: dict) -> str:
    """What each judge made of the candidates, per seed: pairs, ties, how often its chosen answer is right, how often
    it orders a pair as the checker does, and how often the reference was chosen or rejected."""
    lines = []
    for s in results["seeds"]:
        lines.append(f"seed {s['seed']}: {s['duplicates']} duplicate samples; flawed references: {s['flaws']['sft']} "
                     f"in stage 1, {s['flaws']['prefs']} among the preference prompts")
        for name, p in s["judges"].items():
            ties = p["skipped"].get("tie", 0)
            lines.append(f"  {name}: {p['pairs']} pairs from {p['prompts']} prompts ({ties} ties, "
                         f"{sum(p['skipped'].values()) - ties} other skips, {p['flipped']} flipped); chosen right "
                         f"{p['chosen_correct']:.0%}, pair accuracy {p['pair_accuracy']:.0%}; the reference was "
                         f"chosen in {p['reference_chosen']} (flawed in {p['flawed_references_chosen']}) and rejected "
                         f"in {p['reference_rejected']}")
    return "\n".join(lines)


def examples_text(results: dict, count: int = 4) -> str:
    """A few held-out prompts of the first seed with each model's greedy answer, marked right (ok) or wrong (x)."""
    seed, lang = results["seeds"][0], results["settings"]["lang"]
    lines = []
    for i, number in enumerate(seed["eval_numbers"][:count]):
        truth = number_words(number, lang)
        lines.append(f"Write {number} in {language_name(lang)} words.  (correct: {truth})")
        for key, label in run_rows(results["settings"]):
            answer = seed["runs"][key]["answers"][i]
            mark = "ok" if normalise(answer) == normalise(truth) else "x "
            lines.append(f"  {mark} {_short(label):<40} {answer.strip()[:60]!r}")
    return "\n".join(lines)


def _short(label: str) -> str:
    """``+ CPO (chosen vs rejected) [oracle]`` -> ``CPO [oracle]``."""
    name, _, judge = label.removeprefix("+ ").partition(" [")
    return name.split(" (")[0] + (f" [{judge}" if judge else "")


def pyplot():
    matplotlib = require("matplotlib", "demo", "cpo demo's figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_path: Path) -> Path:
    with atomic_write(out_path, binary=True) as f:
        fig.savefig(f, format="png", dpi=110)
    return Path(out_path)


def bar_panel(ax, title: str, labels: list[str], colours: list[str], per_model: list[list[float]]
              ) -> tuple[list[float], list[float]]:
    """One panel of a comparison figure: a bar per model at its mean over seeds, the sd as error bar, the mean written
    above it. Returns ``(means, sds)``."""
    means = [statistics.fmean(v) for v in per_model]
    sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_model]
    bars = ax.bar(range(len(labels)), means, yerr=sds, capsize=3, color=colours)
    ax.bar_label(bars, labels=[f"{m:.1f}" for m in means], padding=2, fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return means, sds


def finish_figure(plt, fig, title: str, out_path: Path) -> Path:
    """Title, layout, write ``out_path`` atomically, close."""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = save_figure(fig, out_path)
    plt.close(fig)
    return path


def comparison_figure(results: dict, out_path: Path) -> Path:
    """Bar charts of exact match, chrF and preference accuracy per model (mean over seeds, sd as error bars)."""
    plt = pyplot()
    rows = run_rows(results["settings"])
    wide = len(rows) <= 6  # the three panels side by side; more models: one above the other
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8)) if wide else plt.subplots(3, 1, figsize=(0.7 * len(rows), 10))
    for ax, (metric, title, scale) in zip(axes, METRICS):
        bar_panel(ax, title, [_short(label) for _, label in rows], [COLOURS[k.split("@")[0]] for k, _ in rows],
                  [[s["runs"][k][metric] * scale for s in results["seeds"]] for k, _ in rows])
        ax.set_ylim(0, 112)
    s = results["settings"]
    return finish_figure(plt, fig, f"{results['model']}, numbers in {language_name(s['lang'])} words, "
                         f"{len(results['seeds'])} seed(s), {s['eval_split']} split", out_path)


def judges_figure(results: dict, out_path: Path) -> Path:
    """Against each judge's pair accuracy (its share of pairs ordered as the checker orders them, mean over seeds):
    left, exact match of each arm (a line through the judges, 95% t intervals over seeds), with SFT-ref and SFT on
    the references (judge-free) as bands; right, the headline, each preference arm minus SFT on the same chosen
    answers, the per-seed paired difference with its 95% t interval."""
    plt = pyplot()
    s, seeds = results["settings"], results["seeds"]
    judges = sorted(s["judges"], key=lambda j: statistics.fmean(x["judges"][j]["pair_accuracy"] for x in seeds))
    accuracy = [statistics.fmean(x["judges"][j]["pair_accuracy"] for x in seeds) * 100 for j in judges]
    exact = {k: [x["runs"][k]["exact_match"] * 100 for x in seeds] for k in seeds[0]["runs"]}

    def point(d: dict) -> tuple[float, float]:
        return d["mean"], 0.0 if d["low"] is None else d["high"] - d["mean"]

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    for key, label in (STAGE1, MORE_REFS):
        mean, half = point(mean_interval(exact[key]))
        left.axhspan(mean - half, mean + half, color=COLOURS[key], alpha=0.15)
        left.axhline(mean, color=COLOURS[key], linestyle="--", label=label.split(" (")[0])
    arms = [a for a in ARMS if a in s["arms"]]
    for k, arm in enumerate(arms):  # side by side, 0.6 points apart, to be seen
        points = [point(mean_interval(exact[run_key(arm, j)])) for j in judges]
        left.errorbar([a + (k - 1) * 0.6 for a in accuracy], [m for m, _ in points], yerr=[h for _, h in points],
                      marker="o", capsize=3, label=ARMS[arm][0].split(" (")[0], color=COLOURS[arm])
        if arm in PREFERENCE_ARMS and "sft_chosen" in arms:
            points = [point(paired_difference(exact[run_key(arm, j)], exact[run_key("sft_chosen", j)]))
                      for j in judges]
            right.errorbar([a + (k - 1.5) * 0.6 for a in accuracy], [m for m, _ in points],
                           yerr=[h for _, h in points], marker="o", capsize=3, color=COLOURS[arm],
                           label=f"{ARMS[arm][0].split(' (')[0]} - SFT on the chosen candidates")
    right.axhline(0.0, color="black", linewidth=0.8)
    for ax in (left, right):
        for a, j in zip(accuracy, judges):
            ax.annotate(j, (a, 0), xycoords=("data", "axes fraction"), textcoords="offset points", xytext=(0, 4),
                        ha="center", fontsize=8)
        ax.set_xlabel("judge's pair accuracy (% of pairs ordered as the checker orders them)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    left.set_ylabel(f"exact match % ({s['eval_split']}; mean, 95% interval)")
    right.set_ylabel("paired difference, points (mean, 95% t interval)")
    return finish_figure(plt, fig, f"{results['model']}: {len(seeds)} seeds, {len(seeds[0]['eval_numbers'])} "
                         f"{s['eval_split']} items each", out_path)


def write_report(results: dict, out_dir: Path, seconds: float) -> str:
    """Write ``table.md``, ``comparison.png``, ``judges.png`` (with more than one judge) and ``training_curves.png``
    (the first seed's stage-2 runs) to ``out_dir``; returns the text to print."""
    table = results_table(results)
    with atomic_write(out_dir / "table.md") as f:
        f.write(table + "\n")
    figures = [comparison_figure(results, out_dir / "comparison.png")]
    if len(results["settings"]["judges"]) > 1:
        figures.append(judges_figure(results, out_dir / "judges.png"))
    rows = [(k, label) for k, label in run_rows(results["settings"]) if k != STAGE1[0]]
    figures.append(stage2_curves(results, out_dir, [k for k, _ in rows], [_short(lb) for _, lb in rows]))
    s = results["settings"]
    header = (f"{results['model']}, numbers 0-{s['high']} in {language_name(s['lang'])} words; {s['flaw_share']:.0%} "
              f"of training references flawed; {s['num_samples']} samples at temperature {s['temperature']}"
              f"{' + greedy' if s['include_greedy'] else ''}; judges {', '.join(s['judges'])}; every run "
              f"{s['steps']} steps x {s['batch_size']}, lr {s['learning_rate']:g}, beta {s['beta']:g}, top "
              f"{s['trainable_layers']} layers; {results['threads']} threads:")
    return "\n\n".join(["", header, table, comparison_text(results), pairs_text(results), examples_text(results),
                         closing_text(results, out_dir, figures, seconds)])


def stage2_curves(results: dict, out_dir: Path, keys: list[str], labels: list[str]) -> Path:
    """``training_curves.png``: the logged curves of the first seed's runs ``keys`` (their folders in ``seedN``)."""
    first = out_dir / f"seed{results['seeds'][0]['seed']}"
    return plot_training_curves([str(first / k.replace("@", "-")) for k in keys], str(out_dir / "training_curves.png"),
                                labels=labels)


def closing_text(results: dict, out_dir: Path, figures: list[Path], seconds: float) -> str:
    """The report's last lines: where the figures and the details are, and the wall time."""
    return (f"Figures: {', '.join(map(str, figures))}; details: {out_dir / 'results.json'}\n"
            f"Wall time: {seconds:.0f} s (loading {results['load_seconds']:.0f} s).")
