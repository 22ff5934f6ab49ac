"""Every file cpo writes goes through a temporary file and os.replace (issue 20, fault 6): the model card, the demo's
results.json, table.md and figures, the training curves, eval_generations.jsonl; a failure leaves what was there."""

import json
import os

import pytest
from helpers import tiny_qwen2

import cpo.demo.report
from cpo import CPOConfig
from cpo.card import write_card
from cpo.files import atomic_write
from cpo.generation import log_eval_generations
from cpo.plot import plot_training_curves


@pytest.fixture
def replaced(monkeypatch):
    """The destinations of every os.replace call (atomic writes end with one)."""
    seen, real = [], os.replace

    def spy(src, dst, *args, **kwargs):
        seen.append(os.path.basename(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    return seen


def test_the_model_card_is_written_atomically(tmp_path, replaced):
    cfg = CPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    write_card(str(tmp_path), cfg, model_name=None, base_model=None, datasets=[], log_history=[])
    assert replaced == ["README.md"]


def test_the_demo_writes_results_and_report_atomically_in_utf8(tmp_path, replaced, monkeypatch):
    from demo.test_demo_report import results

    from cpo.demo.pipeline import write_results

    res = results()
    res["model"] = "Tíny — ü"  # non-ASCII: results.json is UTF-8 whatever the locale
    assert write_results(res, tmp_path).read_bytes().decode("utf-8") == json.dumps(res, indent=2,
                                                                                   ensure_ascii=False) + "\n"
    monkeypatch.setattr(cpo.demo.report, "plot_training_curves", lambda dirs, out, labels=None: out)
    for seed in res["seeds"]:
        for run in seed["runs"].values():
            run["answers"] = ["one", "two"]
    cpo.demo.report.write_report(res, tmp_path, 1.0)
    assert sorted(replaced) == ["comparison.png", "results.json", "table.md"]


def test_training_curves_and_eval_generations_are_written_atomically(tmp_path, replaced, tok):
    state = {"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    plot_training_curves([tmp_path], tmp_path / "curves.png")
    rows = [{"prompt_input_ids": tok("Hi")["input_ids"], "chosen_input_ids": tok(" there")["input_ids"]}]
    for step in (1, 2):
        log_eval_generations(tiny_qwen2(len(tok)), tok, rows, step=step, out_dir=str(tmp_path), report_to=[],
                             max_new_tokens=2, write=True)
    assert replaced == ["curves.png", "eval_generations.jsonl", "eval_generations.jsonl"]
    lines = (tmp_path / "eval_generations.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]  # the second evaluation appends to the first


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "README.md"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("half")
        raise RuntimeError("disk full")
    assert target.read_text(encoding="utf-8") == "old" and [p.name for p in tmp_path.iterdir()] == ["README.md"]
