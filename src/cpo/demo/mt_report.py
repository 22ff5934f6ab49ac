"""The translation demo's outputs: the table (BLEU, chrF and the round-trip score, mean ± sd over seeds), each
preference arm against each baseline (the per-seed paired difference with its 95% t interval over seeds), what each
judge made of the candidates, a few translations, ``mt.png`` and the stage-2 training curves."""

from __future__ import annotations

import statistics
from pathlib import Path

from ..files import atomic_write
from .mt_pipeline import BASE, STAGE1
from .pipeline import ARMS, MORE_REFS, run_key
from .report import COLOURS, bar_panel, closing_text, finish_figure, pyplot, stage2_curves
from .stats import outcome, paired_difference

METRICS = (("chrf", "chrF"), ("bleu", "BLEU"), ("roundtrip", "round-trip chrF"))
HEADLINE = "chrf"


def mt_run_rows(settings: dict) -> list[tuple[str, str]]:
    """``(run key, label)`` of every model, in table order: the base model and SFT-ref (once), SFT on the references,
    then each arm on each judge's pairs."""
    rows = [BASE, STAGE1, (MORE_REFS[0], f"+ {MORE_REFS[1]}")]
    for judge in settings["judges"]:
        rows += [(run_key(arm, judge), f"+ {ARMS[arm][0]} [{judge}]") for arm in settings["arms"]]
    return rows


ONCE = {BASE[0]: "base", STAGE1[0]: "stage1"}  # the models measured once, and where results keeps them


def measurements(results: dict, key: str) -> list[dict]:
    """A model's measurements, one per seed (the base model and SFT-ref: one, measured once)."""
    if key in ONCE:
        return [results[ONCE[key]]]
    return [s["runs"][key] for s in results["seeds"]]


def values(results: dict, key: str, metric: str) -> list[float]:
    """A model's ``metric``, one value per seed (the base model and SFT-ref: one value)."""
    return [m[metric] for m in measurements(results, key)]


def _mean_sd(vals: list[float]) -> str:
    mean = statistics.fmean(vals)
    return f"{mean:.1f}" if len(vals) == 1 else f"{mean:.1f} ± {statistics.stdev(vals):.1f}"


def mt_table(results: dict) -> str:
    """A markdown table: one row per model, corpus chrF, BLEU and the mean round-trip score on the held-out
    sentences, mean ± sd over the seeds."""
    s, n = results["settings"], len(results["seeds"])
    lines = [f"| model ({len(results['heldout_ids'])} {s['eval_split']} sentences; {n} seed{'s' * (n != 1)} for "
             f"stage 2) | chrF | BLEU | round-trip chrF ({s['roundtrip_sentences']} sentences) |",
             "|---|---:|---:|---:|"]
    for key, label in mt_run_rows(s):
        lines.append(f"| {label} | " + " | ".join(_mean_sd(values(results, key, m)) for m, _ in METRICS) + " |")
    return "\n".join(lines)


def mt_comparisons(results: dict) -> list[tuple[str, str]]:
    """``(a, b)`` run keys of every comparison: per judge, CPO and ARPO against SFT on the chosen candidates and SFT
    on the references, and ARPO against CPO."""
    out, arms = [], results["settings"]["arms"]
    for judge in results["settings"]["judges"]:
        for arm in (a for a in ("cpo", "arpo", "cpo_simpo") if a in arms):
            out += [(run_key(arm, judge), run_key("sft_chosen", judge))] * ("sft_chosen" in arms)
            out.append((run_key(arm, judge), MORE_REFS[0]))
            out += [(run_key(arm, judge), run_key("cpo", judge))] * (arm == "arpo" and "cpo" in arms)
    return out


def mt_differences(results: dict) -> list[dict]:
    """Per comparison and metric: the per-seed paired difference with its 95% t interval over seeds and its
    :func:`~cpo.demo.stats.outcome`."""
    out = []
    for a, b in mt_comparisons(results):
        for metric, _ in METRICS:
            diff = paired_difference(values(results, a, metric), values(results, b, metric))
            out.append({"a": a, "b": b, "metric": metric, **diff, "outcome": outcome(diff)})
    return out


def differences_text(results: dict) -> str:
    n = len(results["seeds"])
    lines = [f"Per-seed paired differences (points; mean and 95% t interval over {n} seed(s)). The chrf-ref judge "
             "chose its pairs by chrF against the references, so its arms' chrF and BLEU flatter it; the round-trip "
             "score is the round-trip judge's own measure and flatters that one:"]
    for d in mt_differences(results):
        interval = "" if d["low"] is None else f" [{d['low']:+.2f}, {d['high']:+.2f}]"
        lines.append(f"  {d['metric']:>9}  {d['a']} - {d['b']}: {d['mean']:+.2f}{interval} ({d['outcome']})")
    return "\n".join(lines)


def judge_summary(results: dict, judge: str) -> dict:
    """A judge's statistics averaged over the seeds (:func:`cpo.demo.mt_judges.judge_pairs`)."""
    stats = [s["judges"][judge] for s in results["seeds"]]
    agreement = [x["agreement"] for x in stats if x["agreement"] is not None]
    return {"pairs": statistics.fmean(x["pairs"] for x in stats),
            "prompts": statistics.fmean(x["prompts"] for x in stats),
            "ties": statistics.fmean(x["skipped"].get("tie", 0) for x in stats),
            "reference_chosen": statistics.fmean(x["reference_chosen"] / max(x["pairs"], 1) for x in stats),
            "prefers_reference": statistics.fmean(x["prefers_reference"] for x in stats),
            "agreement": statistics.fmean(agreement) if agreement else None}


def judges_text(results: dict) -> str:
    """What each judge made of the candidates, mean over seeds."""
    dup = statistics.fmean(s["duplicates"] for s in results["seeds"])
    lines = [f"Judges (mean over seeds; {dup:.1f} duplicate samples dropped a seed):"]
    for judge in results["settings"]["judges"]:
        j = judge_summary(results, judge)
        agree = "n/a" if j["agreement"] is None else f"{j['agreement']:.0%}"
        lines.append(f"  {judge}: {j['pairs']:.1f} pairs from {j['prompts']:.0f} prompts ({j['ties']:.1f} ties); "
                     f"reference chosen in {j['reference_chosen']:.0%} of its pairs; scores the reference above "
                     f"every sample in {j['prefers_reference']:.0%} of prompts; the other judge agrees with "
                     f"{agree} of its pairs of two samples")
    return "\n".join(lines)


def examples_text(results: dict, count: int = 3) -> str:
    """The first held-out sentences of the first seed with each model's translation."""
    from .mt_data import load_slice

    by_id = {s.id: s for s in load_slice("test" if results["settings"]["eval_split"] == "test" else "dev")}
    lines = []
    for i, sid in enumerate(results["heldout_ids"][:count]):
        lines.append(f"{by_id[sid].de}  (reference: {by_id[sid].en})")
        for key, label in mt_run_rows(results["settings"]):
            hypothesis = measurements(results, key)[0]["hypotheses"][i]
            lines.append(f"  {label.removeprefix('+ ')[:44]:<44} {hypothesis[:90]!r}")
    return "\n".join(lines)


def mt_figure(results: dict, out_path: Path) -> Path:
    """Bars of chrF, BLEU and the round-trip score per model (mean over seeds, sd as error bars)."""
    plt = pyplot()
    rows = mt_run_rows(results["settings"])
    labels = [label.removeprefix("+ ").split(" (")[0] + label.partition(")")[2] for _, label in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, (metric, title) in zip(axes, METRICS):
        means, sds = bar_panel(ax, title, labels, [COLOURS.get(k.split("@")[0], "#bbbbbb") for k, _ in rows],
                               [values(results, k, metric) for k, _ in rows])
        ax.set_ylim(max(0.0, min(m - s for m, s in zip(means, sds)) - 3), max(m + s for m, s in zip(means, sds)) + 2)
    s = results["settings"]
    return finish_figure(plt, fig, f"{results['model']}, German to English, {len(results['heldout_ids'])} "
                         f"{s['eval_split']} sentences, {len(results['seeds'])} seed(s) of stage 2", out_path)


def write_mt_report(results: dict, out_dir: Path, seconds: float) -> str:
    """Write ``table.md``, ``mt.png`` and ``training_curves.png`` (the first seed's stage-2 runs) to ``out_dir``;
    returns the text to print."""
    table = mt_table(results)
    with atomic_write(out_dir / "table.md") as f:
        f.write(table + "\n")
    figures = [mt_figure(results, out_dir / "mt.png")]
    rows = [(k, label) for k, label in mt_run_rows(results["settings"]) if k not in ONCE]
    figures.append(stage2_curves(results, out_dir, [k for k, _ in rows], [lb.removeprefix("+ ") for _, lb in rows]))
    s = results["settings"]
    header = (f"{results['model']}, German to English (WMT); stage 1 {s['stage1_steps']} steps, every stage-2 run "
              f"{s['steps']} steps x {s['batch_size']}, lr {s['learning_rate']:g}, beta {s['beta']:g}, top "
              f"{s['trainable_layers']} layers; {s['num_samples']} samples at temperature {s['temperature']} for "
              f"{s['pref_prompts']} preference prompts a seed; judges {', '.join(s['judges'])}; "
              f"{results['threads']} threads:")
    return "\n\n".join(["", header, table, differences_text(results), judges_text(results), examples_text(results),
                        closing_text(results, out_dir, figures, seconds)])
