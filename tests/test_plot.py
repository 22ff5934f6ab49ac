"""cpo.plot and `cpo plot`: curves read from trainer_state.json, one figure for one or several runs."""

import json

import matplotlib.image
import pytest

from cpo.cli import main
from cpo.errors import UsageError
from cpo.plot import build_figure, find_state_file, plot_training_curves, read_curves

HISTORY = [
    {"step": 1, "epoch": 0.1, "loss": 0.9, "nll_loss": 2.0, "rewards/margins": 0.1, "rewards/accuracies": 0.5,
     "rewards/chosen": -1.0, "rewards/rejected": -1.1, "learning_rate": 1e-5},
    {"step": 2, "epoch": 0.2, "loss": 0.7, "nll_loss": 1.8, "rewards/margins": 0.3, "rewards/accuracies": 0.75,
     "rewards/chosen": -0.9, "rewards/rejected": -1.2},
    {"step": 2, "epoch": 0.2, "eval_loss": 0.8, "eval_nll_loss": 1.9, "eval_rewards/margins": 0.2,
     "eval_rewards/accuracies": 0.6, "eval_rewards/chosen": -0.95, "eval_rewards/rejected": -1.15},
    {"step": 2, "train_loss": 0.8, "train_runtime": 3.0},
]


def write_state(folder, history=HISTORY):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": history}), "utf-8")
    return folder


def test_read_curves_splits_train_and_eval(tmp_path):
    curves = read_curves(write_state(tmp_path / "run") / "trainer_state.json")
    assert curves["loss"] == ([1, 2], [0.9, 0.7])  # train_loss (the summary) is not part of it
    assert curves["eval_loss"] == ([2], [0.8])
    assert curves["rewards/rejected"] == ([1, 2], [-1.1, -1.2])
    assert curves["eval_rewards/accuracies"] == ([2], [0.6])
    assert "learning_rate" not in curves and "train_loss" not in curves


def test_find_state_file_of_a_running_job_takes_the_latest_checkpoint(tmp_path):
    run = tmp_path / "run"
    write_state(run / "checkpoint-9")
    write_state(run / "checkpoint-10")
    (run / "checkpoint-11").mkdir()  # being written: no state yet
    assert find_state_file(run) == run / "checkpoint-10" / "trainer_state.json"
    assert find_state_file(run / "checkpoint-9") == run / "checkpoint-9" / "trainer_state.json"
    write_state(run)
    assert find_state_file(run) == run / "trainer_state.json"  # a finished run: the top-level state


def test_find_state_file_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        find_state_file(tmp_path / "nope")
    with pytest.raises(UsageError, match="No trainer_state.json"):
        find_state_file(tmp_path)
    (tmp_path / "trainer_state.json").write_text("{not json", "utf-8")
    with pytest.raises(UsageError, match="Cannot read"):
        read_curves(tmp_path / "trainer_state.json")


def test_figure_draws_each_run_train_solid_eval_dashed(tmp_path):
    other = [dict(e, loss=e["loss"] * 2) if "loss" in e else e for e in HISTORY]
    runs = [("a", read_curves(write_state(tmp_path / "a") / "trainer_state.json")),
            ("b", read_curves(write_state(tmp_path / "b", other) / "trainer_state.json"))]
    fig = build_figure(runs)
    loss_ax = fig.axes[0]
    lines = {line.get_label(): line for line in loss_ax.lines}
    assert set(lines) == {"0:loss", "0:eval_loss", "1:loss", "1:eval_loss"}
    assert list(lines["1:loss"].get_xdata()) == [1, 2] and list(lines["1:loss"].get_ydata()) == [1.8, 1.4]
    assert lines["0:loss"].get_linestyle() == "-" and lines["0:eval_loss"].get_linestyle() == "--"
    assert lines["0:loss"].get_color() != lines["1:loss"].get_color()
    pair_ax = fig.axes[4]
    assert {line.get_label() for line in pair_ax.lines} >= {"0:rewards/chosen", "0:rewards/rejected",
                                                            "0:eval_rewards/chosen", "0:eval_rewards/rejected"}
    assert [ax.get_title() for ax in fig.axes[:5]] == [
        "loss", "nll_loss", "rewards/margins", "rewards/accuracies", "rewards/chosen and rewards/rejected"]


def test_plot_training_curves_writes_a_png(tmp_path):
    out = plot_training_curves(write_state(tmp_path / "run"), tmp_path / "figs" / "c.png")
    assert out == tmp_path / "figs" / "c.png"
    assert matplotlib.image.imread(out).shape[:2] == (560, 1040)  # 13 x 7 inches at 80 dpi
    with pytest.raises(UsageError, match="2 labels for 1 runs"):
        plot_training_curves([tmp_path / "run"], tmp_path / "x.png", labels=["a", "b"])


def test_cpo_plot_over_two_runs(tmp_path, capsys, monkeypatch):
    a, b = write_state(tmp_path / "a"), write_state(tmp_path / "b" / "checkpoint-2")
    out = tmp_path / "compare.png"
    assert main(["plot", str(a), str(tmp_path / "b"), "--labels", "first", "second", "--output", str(out)]) == 0
    assert matplotlib.image.imread(out).shape[:2] == (560, 1040)
    assert main(["plot", str(a)]) == 0  # default: inside the run folder
    assert (a / "training_curves.png").stat().st_size > 10_000
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(a), str(b)]) == 0
    assert (tmp_path / "training_curves_comparison.png").is_file()
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "missing' does not exist" in capsys.readouterr().err
