"""The demo's outputs: the markdown table, ``comparison.png`` and the training curves."""

from __future__ import annotations

from pathlib import Path

from ..mt.prompts import language_name
from ..plot import plot_training_curves

ROWS = (("base", "base (no training)"), ("sft", "SFT (chosen only)"), ("cpo", "CPO (chosen vs rejected)"))


def results_table(results: dict) -> str:
    """A markdown table: one row per model (base, SFT, CPO), exact match and preference accuracy on the eval items.

    ``results`` is what :func:`cpo.demo.pipeline.run_demo` returns.
    """
    n, split = results["eval_items"], results["settings"]["eval_split"]
    lines = [
        f"| model | {split} items | exact match | preference accuracy |",
        "|---|---:|---:|---:|",
    ]
    for key, label in ROWS:
        run = results["runs"][key]
        hits = round(run["exact_match"] * n)
        lines.append(f"| {label} | {n} | {hits}/{n} ({run['exact_match']:.0%}) | {run['preference_accuracy']:.0%} |")
    return "\n".join(lines)


def paired_comparison(results: dict) -> dict:
    """SFT vs CPO item by item: how many held-out items only SFT gets right (``sft_only``), only CPO
    (``cpo_only``), and the exact two-sided McNemar p-value of that split (binomial with p = 1/2 over the
    disagreements; 1.0 when there are none)."""
    from math import comb

    from .measure import normalise
    from .task import number_words

    lang = results["settings"]["lang"]
    truth = [normalise(number_words(n, lang)) for n in results["eval_numbers"]]
    right = {key: [normalise(a) == t for a, t in zip(results["runs"][key]["answers"], truth)] for key in ("sft", "cpo")}
    sft_only = sum(s and not c for s, c in zip(right["sft"], right["cpo"]))
    cpo_only = sum(c and not s for s, c in zip(right["sft"], right["cpo"]))
    n = sft_only + cpo_only
    tail = sum(comb(n, k) for k in range(min(sft_only, cpo_only) + 1)) / 2**n
    return {"sft_only": sft_only, "cpo_only": cpo_only, "p_value": min(1.0, 2 * tail)}


def comparison_text(results: dict) -> str:
    """One plain sentence on CPO vs SFT exact match, item by item, with its McNemar p-value."""
    c = paired_comparison(results)
    return (f"CPO vs SFT, item by item: {c['cpo_only']} held-out items only CPO gets right, {c['sft_only']} only "
            f"SFT (exact McNemar p = {c['p_value']:.2f}; p >= 0.05 means no difference this test can tell apart).")


def examples_text(results: dict, count: int = 4) -> str:
    """A few held-out prompts with each model's greedy answer, marked right (ok) or wrong (x), as plain text."""
    from .measure import normalise

    lines = []
    for ex in results["examples"][:count]:
        lines.append(f"{ex['prompt']}  (correct: {ex['answer']})")
        for key, label in ROWS:
            mark = "ok" if normalise(ex[key]) == normalise(ex["answer"]) else "x "
            lines.append(f"  {mark} {label.split(' ')[0]:<4} {ex[key].strip()[:70]!r}")
    return "\n".join(lines)


def comparison_figure(results: dict, out_path: Path) -> Path:
    """Bar charts of exact match and preference accuracy for base, SFT and CPO; saved to ``out_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label.split(" ")[0] for _, label in ROWS]
    colours = ["#9e9e9e", "#4c72b0", "#dd8452"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharey=True)
    for ax, metric, title in zip(axes, ("exact_match", "preference_accuracy"),
                                 ("exact match (greedy)", "preference accuracy")):
        values = [results["runs"][key][metric] for key, _ in ROWS]
        bars = ax.bar(labels, values, color=colours)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], padding=2)
        ax.set_title(title)
        ax.set_ylim(0, 1.12)
        ax.grid(axis="y", alpha=0.3)
    s = results["settings"]
    fig.suptitle(f"{results.get('model', 'model')}, numbers in {language_name(s['lang'])} words: "
                 f"{results['eval_items']} {s['eval_split']} items, seed {s['seed']}", fontsize=10)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def training_curves(run_dirs: list[Path], out_path: Path, labels: list[str]) -> Path:
    """Training curves of the runs in one figure (:func:`cpo.plot.plot_training_curves`)."""
    return plot_training_curves([str(d) for d in run_dirs], str(out_path), labels=labels)


def write_report(results: dict, out_dir: Path, seconds: float) -> str:
    """Write ``table.md``, ``comparison.png`` and ``training_curves.png`` to ``out_dir``; returns the text to print:
    the settings, the table, the item-by-item comparison, a few answers and the wall time."""
    table = results_table(results)
    (out_dir / "table.md").write_text(table + "\n")
    figure = comparison_figure(results, out_dir / "comparison.png")
    curves = training_curves([out_dir / "sft", out_dir / "cpo"], out_dir / "training_curves.png", ["SFT", "CPO"])
    s = results["settings"]
    header = (f"{results['model']}, numbers 0-{s['high']} in {language_name(s['lang'])} words, seed {s['seed']}, "
              f"{s['steps']} steps x {s['batch_size']} pairs, lr {s['learning_rate']:g}, top {s['trainable_layers']} "
              f"layers trained, {results['threads']} threads:")
    return "\n\n".join([
        "", header, table, comparison_text(results), examples_text(results),
        f"Figures: {figure}, {curves}; details: {out_dir / 'results.json'}\n"
        f"Wall time: {seconds:.0f} s (loading {results['load_seconds']:.0f} s).",
    ])
