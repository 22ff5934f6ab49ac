"""One run per output_dir (issue 20, faults 4 and 5): a new run refuses a folder that holds another run and changes
nothing in it; overwrite_output_dir clears that run's files first; resume takes "true" as the latest checkpoint and
refuses a checkpoint trained with other settings unless resume_anyway."""

import copy
import logging

import pytest
from helpers import tiny_qwen2, train_args, zen

from cpo import CPOTrainer
from cpo.errors import UsageError


def trainer(tmp_path, tok, **config):
    return CPOTrainer(model=tiny_qwen2(len(tok)), args=train_args(tmp_path, **config),
                      processing_class=copy.deepcopy(tok), train_dataset=zen("standard_preference"))


def snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_a_new_run_refuses_a_folder_that_holds_another_run_and_changes_nothing(tmp_path, tok):
    (tmp_path / "checkpoint-7").mkdir()
    (tmp_path / "checkpoint-7" / "model.safetensors").write_bytes(b"old run")
    (tmp_path / "eval_generations.jsonl").write_text('{"step": 7}\n', encoding="utf-8")
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="already holds a run") as err:
        trainer(tmp_path, tok).train()
    assert "--resume_from_checkpoint true" in str(err.value) and "--overwrite_output_dir" in str(err.value)
    assert "checkpoint-7" in str(err.value) and "eval_generations.jsonl" in str(err.value)
    assert snapshot(tmp_path) == before


def test_overwrite_output_dir_clears_the_old_run_and_keeps_other_files(tmp_path, tok):
    from cpo.runs import run_entries

    (tmp_path / "checkpoint-7").mkdir()
    (tmp_path / "eval_generations.jsonl").write_text('{"step": 7}\n', encoding="utf-8")
    (tmp_path / "my_notes.txt").write_text("mine", encoding="utf-8")
    trainer(tmp_path, tok, overwrite_output_dir=True, save_strategy="steps", save_steps=3).train()
    assert run_entries(tmp_path) == ["checkpoint-3"]  # the old run's checkpoint and generations are gone
    assert (tmp_path / "my_notes.txt").read_text(encoding="utf-8") == "mine"


def test_resume_true_is_the_latest_checkpoint_not_a_folder_named_true(tmp_path):
    from cpo.runs import resolve_resume

    with pytest.raises(UsageError, match="holds no checkpoint-N folder"):
        resolve_resume("true", tmp_path)
    for n in (2, 10, 9):
        (tmp_path / f"checkpoint-{n}").mkdir()
    assert resolve_resume("true", tmp_path) == tmp_path / "checkpoint-10"
    assert resolve_resume(True, tmp_path) == tmp_path / "checkpoint-10"
    assert resolve_resume("false", tmp_path) is None and resolve_resume(None, tmp_path) is None
    assert resolve_resume(tmp_path / "checkpoint-2", tmp_path) == tmp_path / "checkpoint-2"
    with pytest.raises(UsageError, match="is not a checkpoint folder"):
        resolve_resume(str(tmp_path / "nope"), tmp_path)


def test_resume_checks_the_checkpoints_settings(tmp_path, tok, caplog):
    """A checkpoint saved with beta=0.1 resumes with beta=0.1; with beta=0.5 it is refused, naming beta, unless
    resume_anyway, which logs the difference and resumes."""
    trainer(tmp_path, tok, max_steps=1, save_strategy="steps", save_steps=1).train()
    with pytest.raises(UsageError, match=r"beta: 0.1 -> 0.5.*--resume_anyway"):
        trainer(tmp_path, tok, max_steps=2, beta=0.5).train(resume_from_checkpoint="true")
    with pytest.raises(UsageError, match=r"max_length: 1024 -> 64"):
        trainer(tmp_path, tok, max_steps=2, max_length=64).train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    smaller = CPOTrainer(model=tiny_qwen2(len(tok)), args=train_args(tmp_path, max_steps=2),
                         processing_class=copy.deepcopy(tok), train_dataset=zen("standard_preference").select(range(4)))
    with pytest.raises(UsageError, match=r"datasets: .*rows.* -> .*4 rows"):
        smaller.train(resume_from_checkpoint="true")
    with caplog.at_level(logging.WARNING, logger="cpo"):
        t = trainer(tmp_path, tok, max_steps=2, beta=0.5, resume_anyway=True)
        t.train(resume_from_checkpoint="true")
    assert t.state.global_step == 2 and "differs from this run in beta: 0.1 -> 0.5" in caplog.text
    from cpo.runs import SETTINGS_FILE

    assert (tmp_path / "checkpoint-1" / SETTINGS_FILE).is_file()
    same = trainer(tmp_path, tok, max_steps=3)
    same.train(resume_from_checkpoint=True)
    assert same.state.global_step == 3
