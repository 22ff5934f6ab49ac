"""Bad input refused before work starts, and nothing on disk lost (issue 20, faults 2, 7 and 8): one line naming the
flag or the file, exit status 2, no traceback, no model loaded, no output touched."""

import json
import re

import pytest
from helpers import preference_rows, save_tiny_model

import cpo.cli.loading
from cpo.cli import main
from cpo.errors import UsageError


@pytest.fixture
def no_model(monkeypatch):
    """A refusal must come before any model loads: loading one fails the test."""
    def load(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(cpo.cli.loading, "load_model_and_tokenizer", load)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, gpt2_tokenizer):
    """A real model folder and dataset, so that only the bad value can stop a run before it loads the model."""
    folder = tmp_path_factory.mktemp("inputs")
    save_tiny_model(folder / "model", gpt2_tokenizer)
    (folder / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preference_rows(4)), encoding="utf-8")
    return folder


def refused(argv, capsys) -> str:
    """Run `cpo ...` and return its error line; argparse's refusals exit through SystemExit(2)."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    return err


def test_prefs_with_every_candidate_tied_leaves_the_output_byte_identical(tmp_path, capsys):
    """Fault 2: no pair survives (the system's translations equal the reference: chrF ties), so the existing output
    stays as it was, byte for byte, and the exit status is 1."""
    lines = {"s.de": "Hallo.\nJa.\n", "r.en": "Hello.\nYes.\n", "a.en": "Hello.\nYes.\n"}
    for name, text in lines.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    out = tmp_path / "prefs.jsonl"
    out.write_bytes(b'{"prompt": "kept", "chosen": "a", "rejected": "b"}\n')
    before = out.read_bytes()
    code = main(["prefs", "--src", str(tmp_path / "s.de"), "--ref", str(tmp_path / "r.en"), "--system",
                 f"a={tmp_path / 'a.en'}", "--src_lang", "de", "--tgt_lang", "en", "--output", str(out)])
    assert code == 1 and out.read_bytes() == before
    assert f"no pairs: {out} left as it was" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.en", "prefs.jsonl", "r.en", "s.de"]


@pytest.mark.parametrize("flag, value", [
    ("per_device_train_batch_size", "0"), ("per_device_train_batch_size", "-2"), ("gradient_accumulation_steps", "0"),
    ("num_train_epochs", "-1"), ("num_train_epochs", "0"), ("learning_rate", "-1"), ("learning_rate", "nan"),
    ("save_total_limit", "-1"), ("dataloader_num_workers", "-1"), ("max_grad_norm", "inf"), ("seed", "-1"),
])
def test_train_refuses_bad_numbers_before_loading(tmp_path, inputs, capsys, no_model, flag, value):
    """Fault 7: each of these failed only once the model was loaded, or (epochs <= 0) saved an untrained model."""
    err = refused(["train", "--model_name_or_path", str(inputs / "model"), "--dataset_name",
                   str(inputs / "d.jsonl"), "--output_dir", str(tmp_path / "out"), f"--{flag}", value], capsys)
    assert flag in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, shown", [
    (["--max_length", "0"], r"max_length=0 must be a positive integer"),
    (["--beta", "-1"], r"beta=-1.0 must be > 0"),
    (["--beta", "nan"], r"beta=nan is not a finite number"),
    (["--loss_type", "bogus"], r"loss_type='bogus' is not a known loss"),
    (["--batch_size", "0"], r"argument --batch_size: 0 is out of range"),
])
def test_eval_refuses_bad_settings_before_loading(inputs, capsys, no_model, extra, shown):
    err = refused(["eval", "--mode", "preference", "--model_name_or_path", str(inputs / "model"), "--dataset_name",
                   str(inputs / "d.jsonl"), *extra], capsys)
    assert re.search(shown, err), err


@pytest.mark.parametrize("argv, shown", [
    (["demo", "--threads", "0"], "argument --threads: 0 is out of range: give an integer >= 1"),
    (["demo", "--seeds", "-1"], "argument --seeds: -1 is out of range"),
    (["generate", "--model_name_or_path", "m", "--src", "s", "--temperature", "inf"],
     "argument --temperature: 'inf' is not a finite number > 0"),
    (["generate", "--model_name_or_path", "m", "--src", "s", "--top_p", "0"], "argument --top_p: 0 is out of range"),
    (["prefs", "--output", "o.jsonl", "--threshold", "nan"], "argument --threshold: 'nan' is not a finite number"),
])
def test_other_subcommands_refuse_bad_numbers_when_parsing(capsys, argv, shown):
    assert shown in refused(argv, capsys)


def latin1(path):
    path.write_bytes('{"prompt": "Caf\u00e9?", "chosen": "Oui.", "rejected": "Non."}\n'.encode("latin-1"))
    return path


def test_a_latin1_dataset_is_refused_naming_the_file_and_line(tmp_path, capsys, no_model):
    """Fault 8: datasets raised a bare UnicodeDecodeError (a traceback under `cpo generate`)."""
    data = latin1(tmp_path / "prompts.jsonl")
    err = refused(["generate", "--model_name_or_path", str(tmp_path / "m"), "--dataset_name", str(data),
                   "--output", str(tmp_path / "c.jsonl")], capsys)
    assert f"The dataset file {str(data)!r} is not UTF-8 (line 1" in err and "iconv" in err
    with pytest.raises(UsageError, match=r"prompts.jsonl' is not UTF-8 \(line 1"):  # a folder of data files too
        cpo.cli.loading.load_dataset_dict(str(tmp_path))


def test_a_latin1_trainer_state_and_mqm_table_are_refused_naming_the_file(tmp_path, capsys):
    state = tmp_path / "run" / "trainer_state.json"
    state.parent.mkdir()
    state.write_bytes(json.dumps({"log_history": [{"step": 1, "loss": 1.0}]}).encode() + "\n\xe9\n".encode("latin-1"))
    err = refused(["plot", str(state.parent), "--output", str(tmp_path / "c.png")], capsys)
    assert f"The trainer state file {str(state)!r} is not UTF-8 (line 2" in err
    mqm = tmp_path / "mqm.tsv"
    mqm.write_bytes(b"system\tdoc\n" + "sys\tdoc\u00e9\n".encode("latin-1"))
    (tmp_path / "scores.tsv").write_text("sys\t-1.0\n", encoding="utf-8")
    err = refused(["prefs", "--mqm", str(mqm), "--mqm_scores", str(tmp_path / "scores.tsv"), "--src_lang", "en",
                   "--tgt_lang", "de", "--output", str(tmp_path / "o.jsonl")], capsys)
    assert f"file {str(mqm)!r} is not UTF-8 (line 2" in err
