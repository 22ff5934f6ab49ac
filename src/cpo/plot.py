"""Training curves from ``trainer_state.json``: loss, NLL, reward margins, accuracies, chosen and rejected rewards.

Train logs are solid lines, evaluation logs (``eval_`` keys) dashed, against the optimiser step. Several runs are
overlaid, one colour each. matplotlib is imported inside the functions, with the Agg backend (no display needed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from .errors import UsageError
from .extras import require

# (panel title, metric keys drawn in it); the last panel of the grid holds the legend.
PANELS = (
    ("loss", ("loss",)),
    ("nll_loss", ("nll_loss",)),
    ("rewards/margins", ("rewards/margins",)),
    ("rewards/accuracies", ("rewards/accuracies",)),
    ("rewards/chosen and rewards/rejected", ("rewards/chosen", "rewards/rejected")),
)
_MARKERS = {"rewards/chosen": "^", "rewards/rejected": "v"}
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def find_state_file(run_dir: str | Path) -> Path:
    """``trainer_state.json`` of a run folder, or of its latest ``checkpoint-<step>`` (a job still running), or of a
    checkpoint folder itself; a path to the JSON file is accepted too.

    Raises:
        UsageError: when there is none, saying where it looked.
    """
    p = Path(run_dir)
    if p.is_file() and p.name.endswith(".json"):
        return p
    if not p.is_dir():
        raise UsageError(f"The run folder {str(run_dir)!r} does not exist. Give the output_dir of a `cpo train` run "
                         "or one of its checkpoint-* folders.")
    if (p / "trainer_state.json").is_file():
        return p / "trainer_state.json"
    checkpoints = sorted(
        (int(m.group(1)), c) for c in p.iterdir() if (m := _CHECKPOINT.match(c.name)) and (c / "trainer_state.json").is_file()
    )
    if checkpoints:
        return checkpoints[-1][1] / "trainer_state.json"
    raise UsageError(f"No trainer_state.json in {str(run_dir)!r} nor in a checkpoint-* folder inside it. A run writes "
                     "it at each checkpoint (save_steps) and at the end; wait for the first checkpoint.")


def read_curves(state_file: str | Path) -> dict[str, tuple[list[float], list[float]]]:
    """Metric series from a ``trainer_state.json``.

    Returns:
        ``{key: (steps, values)}`` for every metric of :data:`PANELS` found: train keys as they are (``"loss"``),
        eval keys with their ``eval_`` prefix (``"eval_loss"``). Entries without a ``step`` are skipped; the final
        summary (``train_loss``, ``train_runtime``) is not a curve and is ignored.
    """
    from .files import read_text

    try:
        state = json.loads(read_text(Path(state_file), "trainer state"))
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"Cannot read {str(state_file)!r} as a trainer state: {err}.") from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise UsageError(f"{str(state_file)!r} has no log_history list: is it a transformers trainer_state.json?")
    wanted = [k for _, keys in PANELS for k in keys]
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for entry in history:
        if not isinstance(entry, dict) or "step" not in entry:
            continue
        for key in wanted:
            for name in (key, f"eval_{key}"):
                if isinstance(entry.get(name), (int, float)):
                    steps, values = curves.setdefault(name, ([], []))
                    steps.append(entry["step"])
                    values.append(float(entry[name]))
    return curves


def _labels(run_dirs: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(run_dirs):
            raise UsageError(f"{len(labels)} labels for {len(run_dirs)} runs: give one label per run.")
        return list(labels)
    names = [p.name or str(p) for p in run_dirs]
    if len(set(names)) < len(names):  # e.g. two checkpoint-100 folders: add the parent folder
        names = [f"{p.parent.name}/{p.name}" for p in run_dirs]
    return names


def build_figure(runs: Sequence[tuple[str, dict[str, tuple[list[float], list[float]]]]]):
    """A 2x3 figure: one panel per entry of :data:`PANELS`, the sixth for the legend.

    Args:
        runs: ``(label, curves)`` per run, curves as returned by :func:`read_curves`.
    """
    matplotlib = require("matplotlib", "plot", "Drawing training curves")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), dpi=80)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, keys) in zip(axes.flat, PANELS):
        for i, (_, curves) in enumerate(runs):
            for key in keys:
                for name, style in ((key, "-"), (f"eval_{key}", "--")):
                    if name in curves:
                        steps, values = curves[name]
                        color = to_rgb(colors[i % len(colors)])
                        if key == "rewards/rejected":  # the run's colour, lighter
                            color = tuple(0.45 + 0.55 * c for c in color)
                        ax.plot(steps, values, style, color=color, marker=_MARKERS.get(key), markersize=4,
                                linewidth=1.5, label=f"{i}:{name}")
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    legend_ax = axes.flat[-1]
    legend_ax.axis("off")
    handles = [Line2D([], [], color=colors[i % len(colors)], linewidth=3, label=label)
               for i, (label, _) in enumerate(runs)]
    handles += [Line2D([], [], color="black", linestyle="-", label="train"),
                Line2D([], [], color="black", linestyle="--", label="eval"),
                Line2D([], [], color="black", marker="^", linestyle="", label="rewards/chosen"),
                Line2D([], [], color="gray", marker="v", linestyle="", label="rewards/rejected (lighter)")]
    legend_ax.legend(handles=handles, loc="center", frameon=False)
    fig.tight_layout()
    return fig


def plot_training_curves(run_dirs: str | Path | Sequence[str | Path], out_path: str | Path,
                         labels: Sequence[str] | None = None) -> Path:
    """Draw the training curves of one or several runs into ``out_path`` (PNG; parent folders are created).

    Args:
        run_dirs: run folders (``output_dir`` of ``cpo train``, finished or running), checkpoint folders, or
            ``trainer_state.json`` files; one path or a list.
        out_path: the image to write.
        labels: one legend label per run; default: the folder names.

    Returns:
        ``out_path`` as a ``Path``.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise UsageError("No run folder given: give at least one.")
    runs = [(label, read_curves(find_state_file(d))) for label, d in zip(_labels(dirs, labels), dirs)]
    fig = build_figure(runs)
    from .files import atomic_write

    out = Path(out_path)
    with atomic_write(out, binary=True) as f:
        fig.savefig(f, format=out.suffix.lstrip(".").lower() or "png")
    import matplotlib.pyplot as plt  # already loaded, with the Agg backend, by build_figure

    plt.close(fig)
    return out
