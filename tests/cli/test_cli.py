"""The `cpo` command: light parser, help with examples, `cpo train` from YAML + flags, the demo hook, errors."""

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import matplotlib.image
import pytest
import torch
import yaml
from helpers import ROOT

from cpo import CPOConfig
from cpo.cli import main

SRC = ROOT / "src"
HEAVY = ("torch", "transformers", "datasets", "matplotlib", "sacrebleu", "pandas")


def _imported_heavy(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_nothing_heavy():
    """cpo.cli and the modules it needs to parse are light. The package's __init__ is bypassed here (a bare
    package module), so this checks the `cpo` command's own modules whatever __init__ imports."""
    code = (
        "import sys, types, json\n"
        f"pkg = types.ModuleType('cpo'); pkg.__path__ = [{str(SRC / 'cpo')!r}]; sys.modules['cpo'] = pkg\n"
        "import cpo.cli, cpo.cli.train, cpo.cli.eval, cpo.cli.prefs, cpo.cli.plot, cpo.cli.demo, cpo.cli.loading\n"
        "import cpo.mt.prompts, cpo.mt.segments, cpo.mt.scores, cpo.mt.candidates, cpo.mt.pairs, cpo.plot\n"
        "import cpo.files, cpo.pairs.rule, cpo.pairs.candidates, cpo.pairs.scorers, cpo.pairs.alma\n"
        "cpo.cli.build_parser().format_help()\n"
        "for name in ('eval', 'prefs', 'plot', 'demo'):\n"
        "    getattr(cpo.cli, name).build_parser().format_help()\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    assert _imported_heavy(code) == []


def test_importing_the_package_is_light():
    assert _imported_heavy("import sys, json, cpo.cli\ncpo.cli.build_parser()\n"
                           f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))") == []


@pytest.mark.parametrize("command", ["eval", "plot", "prefs", "train"])
def test_every_subcommand_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: cpo {command}" in out and "\nexamples" in out and f"cpo {command} " in out


def test_train_takes_every_cpo_config_field_and_the_trl_script_flags():
    from dataclasses import fields

    from cpo import CPOConfig
    from cpo.cli.train import build_parser

    flags = {opt for action in build_parser()._actions for opt in action.option_strings}
    missing = [f.name for f in fields(CPOConfig) if f.init and f"--{f.name}" not in flags]
    assert missing == []
    trl = ["model_name_or_path", "dataset_name", "dataset_config", "dataset_train_split", "dataset_test_split",
           "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "config"]
    assert [name for name in trl if f"--{name}" not in flags] == []


def test_top_level_help_and_no_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in ("train", "eval", "plot", "prefs", "demo"))
    assert main([]) == 2
    assert "usage: cpo" in capsys.readouterr().err


def test_python_dash_m_cpo_reports_a_user_error_without_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cpo", "plot", str(tmp_path / "missing")], capture_output=True,
                         text=True, timeout=120, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    assert "cpo plot: error: The run folder" in out.stderr and "Traceback" not in out.stderr


def test_every_subcommand_module_has_a_parser_and_a_runner():
    """One module per subcommand, built the same way; importing every module of the package first, so that no
    submodule (say a cpo/cli/run.py) shadows a contract function."""
    import importlib
    import inspect
    import pkgutil

    import cpo.cli

    for info in pkgutil.iter_modules(cpo.cli.__path__):
        importlib.import_module(f"cpo.cli.{info.name}")
    for name in cpo.cli.COMMANDS:
        module = importlib.import_module(f"cpo.cli.{name}")
        assert inspect.isfunction(module.build_parser) and inspect.isfunction(module.run), name
        assert len(inspect.signature(module.run).parameters) == 1, name  # run(args)
    assert inspect.isfunction(cpo.cli.main)


def test_demo_subcommand_parses_its_options_and_runs(monkeypatch):
    """`cpo demo ...` parses with cpo.cli.demo's parser and hands the result to its runner."""
    import cpo.cli.demo

    seen = []
    monkeypatch.setattr(cpo.cli.demo, "run", lambda args: seen.append(args) or 7)
    assert main(["demo", "--quick", "--seed", "3", "--disable_tqdm"]) == 7
    # no --output_dir: run() picks the task's folder (demo, or demo-mt for --task mt)
    assert (seen[0].quick, seen[0].seed, seen[0].disable_tqdm, seen[0].output_dir, seen[0].task) == (
        True, 3, True, None, "numbers")
    assert main(["demo", "--output_dir", "a", "--disable-tqdm"]) == main(["demo", "--output-dir", "a"]) == 7
    assert [str(a.output_dir) for a in seen[1:]] == ["a", "a"] and [a.disable_tqdm for a in seen[1:]] == [True, False]


def _parsers():
    """Every subcommand's parser, and the top-level one."""
    import importlib

    import cpo.cli

    return [("cpo", cpo.cli.build_parser())] + [
        (name, importlib.import_module(f"cpo.cli.{name}").build_parser()) for name in cpo.cli.COMMANDS]


def test_every_option_has_help_and_shows_its_default_once():
    for name, parser in _parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.option_strings)
            shown = formatter._expand_help(action)
            added = shown.count("(default:") - action.help.count("(default:")
            assert shown.count("(default:") <= 1 and (added == 0 or "default" not in action.help.lower()), (
                name, shown)
        text = parser.format_help()
        assert "../shared" not in text and "shared/data" not in text, name


def test_one_spelling_for_outputs_and_progress_bars_in_every_subcommand():
    """A file is --output, a folder --output_dir; progress bars go off with --disable_tqdm (TrainingArguments'
    name); no other spelling exists."""
    seen = {}
    for name, parser in _parsers():
        for action in parser._actions:
            for option in action.option_strings:
                if "output" in option or "progress" in option or "tqdm" in option or option == "-o":
                    seen.setdefault(option, set()).add(name)
    assert set(seen) <= {"--output", "--output_dir", "--disable_tqdm", "--overwrite_output_dir"}
    assert seen["--output"] == {"generate", "prefs", "eval", "plot"} and seen["--output_dir"] == {"train", "demo"}
    assert seen["--disable_tqdm"] == {"train", "generate", "eval", "demo"}


@pytest.mark.parametrize("command, argv, dest, value", [
    ("train", ["--output-dir", "o", "--disable-tqdm"], "disable_tqdm", True),
    ("train", ["--output-dir=o", "--per-device-train-batch-size", "3"], "per_device_train_batch_size", 3),
    ("generate", ["--model-name-or-path", "m", "--output", "c.jsonl", "--max-new-tokens", "7"], "max_new_tokens", 7),
    ("prefs", ["--output", "p.jsonl", "--exclude-reference"], "exclude_reference", True),
    ("eval", ["--mode", "translate", "--hyp-field", "h"], "hyp_field", "h"),
    ("plot", ["run", "--output", "x.png"], "output", "x.png"),
    ("demo", ["--output-dir", "d"], "output_dir", Path("d")),
])
def test_dashes_and_underscores_are_both_accepted(command, argv, dest, value):
    import importlib

    parser = importlib.import_module(f"cpo.cli.{command}").build_parser()
    parsed = parser.parse_args(argv)
    assert getattr(parsed, dest) == value
    underscored = ["--" + a[2:].replace("-", "_") if a.startswith("--") else a for a in argv]
    assert vars(parser.parse_args(underscored)) == vars(parsed)


def test_train_help_lists_cpo_options_first_by_group(capsys):
    """cpo's own options (ScriptArguments, ModelArguments, CPOConfig's fields beyond TrainingArguments) come first,
    loss, then data, then model and PEFT; every TrainingArguments option comes after them."""
    from dataclasses import fields

    from transformers import TrainingArguments

    from cpo.cli.arguments import ModelArguments, ScriptArguments
    from cpo.cli.train import TRAINER_GROUP, build_parser

    parser = build_parser()
    titles = [g.title for g in parser._action_groups if g._group_actions]
    assert titles[1:4] == ["loss: CPO and its family (SimPO, AlphaPO, IPO, hinge, ARPO)", "data",
                           "model and PEFT (parameter-efficient fine-tuning: LoRA adapters)"]
    assert titles[-1] == TRAINER_GROUP
    trainer_fields = {f.name for f in fields(TrainingArguments)}
    own = {f.name for f in fields(CPOConfig) if f.init and f.name not in trainer_fields}
    own |= {f.name for f in (*fields(ScriptArguments), *fields(ModelArguments))}
    groups = [g for g in parser._action_groups if g.title not in ("options", "positional arguments")]
    first = {a.dest for g in groups[:-1] for a in g._group_actions}
    assert first == own
    assert {a.dest for a in groups[-1]._group_actions} == {f.name for f in fields(CPOConfig) if f.init} - own
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert out.index("--loss_type") < out.index("--dataset_name") < out.index("--model_name_or_path") < out.index(
        "--learning_rate")
    assert "(default: 0.1)" in out.split("--beta", 1)[1].split("--", 1)[0]  # defaults shown (parse() keeps them)
    assert "--dataset-name" not in out  # one spelling shown; the note says both are read


def test_version(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"cpo {importlib.metadata.version('cpo')}"


def test_train_three_steps_from_yaml_with_a_flag_override(tiny, pairs, tmp_path, capsys):
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "model_name_or_path": str(tiny), "dataset_name": str(pairs), "output_dir": str(out),
        "dataset_train_split": "train[:8]", "dataset_test_split": "train[8:]", "max_steps": 5,
        "learning_rate": "1e-3", "per_device_train_batch_size": 4, "logging_steps": 1,
        "eval_strategy": "steps", "eval_steps": 2, "max_length": 64}), encoding="utf-8")
    assert main(["train", "--config", str(config), "--max_steps", "3"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"max_steps\s+= 3\s+\[command line\]", err)
    assert re.search(r"learning_rate\s+= 0.001\s+\[yaml\]", err)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3]
    assert [e["step"] for e in state["log_history"] if "eval_loss" in e] == [2, 3]  # every 2 steps, and at the end
    assert yaml.safe_load((out / "cpo_train_config.yaml").read_text())["max_steps"] == 3
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trained, initial = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(tiny)
    assert not torch.equal(trained.model.norm.weight, initial.model.norm.weight)  # the trained weights were saved
    assert len(AutoTokenizer.from_pretrained(out)) == 50257
    png = matplotlib.image.imread(out / "training_curves.png")
    assert png.shape[:2] == (560, 1040) and (out / "training_curves.png").stat().st_size > 20_000


def test_train_with_lora_then_load_the_adapter_for_eval(tiny, pairs, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from cpo.cli.loading import load_model_and_tokenizer

    out = tmp_path / "lora"
    assert main(["train", "--model_name_or_path", str(tiny), "--dataset_name", str(pairs), "--output_dir", str(out),
                 "--max_steps", "1", "--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj",
                 "--learning_rate", "0.01", "--per_device_train_batch_size", "2", "--eval_strategy", "no",
                 "--max_length", "64"]) == 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    assert (out / "training_curves.png").is_file() and not (out / "config.json").exists()
    merged, tok = load_model_and_tokenizer(str(out))  # base model + adapter, merged, as `cpo eval` loads it
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny).eval()
    ids = torch.tensor([tok("Translate this from German to English:")["input_ids"]])
    with torch.no_grad():
        got, want, before = merged.eval()(ids).logits, reference(ids).logits, base(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert (got - before).abs().max() > 1e-4  # the adapter changed the model


def test_train_from_a_gguf_file_goes_through_cpo_gguf(tiny, pairs, tmp_path, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cpo.gguf import gguf_load_options

    gguf_file = tmp_path / "model.gguf"
    gguf_file.write_bytes(b"GGUF")
    calls = []
    fake = types.ModuleType("cpo.gguf")
    fake.gguf_load_options = gguf_load_options  # the real rule of what a .gguf model honours
    fake.load_gguf_model = lambda path, dtype=None: calls.append(("model", path)) or (
        AutoModelForCausalLM.from_pretrained(tiny))
    fake.load_gguf_tokenizer = lambda path: calls.append(("tokenizer", path)) or AutoTokenizer.from_pretrained(tiny)
    fake.align_special_tokens = lambda model, tokenizer: calls.append(("align", type(model).__name__))
    monkeypatch.setitem(sys.modules, "cpo.gguf", fake)
    argv = ["train", "--model_name_or_path", str(gguf_file), "--dataset_name", str(pairs), "--output_dir",
            str(tmp_path / "out"), "--max_steps", "1", "--eval_strategy", "no", "--max_length", "64"]
    assert main(argv) == 0
    assert calls == [("model", str(gguf_file)), ("tokenizer", str(gguf_file)), ("align", "Qwen2ForCausalLM")]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    monkeypatch.setitem(sys.modules, "cpo.gguf", None)  # an installation without GGUF support
    assert main(argv) == 2
    assert "cannot read .gguf files" in capsys.readouterr().err


def test_train_error_paths(tiny, pairs, tmp_path, capsys):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("learning_rte: 0.1\n", encoding="utf-8")
    list_yaml = tmp_path / "list.yaml"
    list_yaml.write_text("- 1\n", encoding="utf-8")
    no_chosen = tmp_path / "no_chosen.jsonl"
    no_chosen.write_text('{"prompt": "a", "good": " b", "rejected": " c"}\n', encoding="utf-8")
    empty_chosen = tmp_path / "empty.jsonl"
    empty_chosen.write_text('{"prompt": "a", "chosen": " b", "rejected": " c"}\n'
                            '{"prompt": "a", "chosen": "  ", "rejected": " c"}\n', encoding="utf-8")
    base = ["train", "--output_dir", str(tmp_path / "o"), "--max_steps", "1", "--eval_strategy", "no"]
    model, data = ["--model_name_or_path", str(tiny)], ["--dataset_name", str(pairs)]
    cases = [
        (["--config", str(bad_yaml)], "unknown key 'learning_rte'. Did you mean learning_rate"),
        (["--config", str(tmp_path / "none.yaml")], "config file .* does not exist"),
        (["--config", str(list_yaml)], "must be a mapping"),
        (data, "No model: give --model_name_or_path"),
        (model, "No training data"),
        (model + ["--dataset_name", str(tmp_path / "none.jsonl")], "none.jsonl' does not exist"),
        (["--model_name_or_path", str(tmp_path / "nomodel")] + data, "nomodel' does not exist"),
        (["--model_name_or_path", str(tmp_path)] + data, "has no config.json"),
        (model + ["--dataset_name", str(no_chosen)], "no 'chosen' column"),
        (model + ["--dataset_name", str(empty_chosen)], r"Row 1, field 'chosen': is empty"),
        (model + data + ["--dataset_train_split", "validation"], "no split 'validation'; it has: train"),
        (model + data + ["--beta", "-1"], r"beta=-1.0 must be > 0"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert "Traceback" not in err and re.search(message, err), (extra, err[-2000:])
    with pytest.raises(SystemExit) as exit_:  # argparse's own error for an unknown flag, with a suggestion
        main(base + model + data + ["--learning_rte", "1"])
    assert exit_.value.code == 2
    assert "did you mean --learning_rate" in capsys.readouterr().err


def test_push_to_hub_uploads_after_every_file_is_written(tiny, pairs, tmp_path, monkeypatch):
    """`cpo train --push_to_hub` uploads the folder once the card, trainer_state.json, the config YAML and the curves
    are in it. The Hub calls are fakes (nothing leaves the machine): the upload records the folder at call time."""
    from huggingface_hub import HfApi

    uploads = []

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        uploads.append((repo_id, {p.name for p in folder.iterdir()}, (folder / "README.md").read_text("utf-8")))
        return "fake commit"

    monkeypatch.setattr(HfApi, "create_repo",
                        lambda self, repo_id, **kw: types.SimpleNamespace(repo_id=f"me/{repo_id}"))
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    out = tmp_path / "run"
    assert main(["train", "--model_name_or_path", str(tiny), "--dataset_name", str(pairs), "--output_dir", str(out),
                 "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--max_length", "64",
                 "--push_to_hub", "--hub_model_id", "cpo-test"]) == 0
    assert len(uploads) == 1
    repo, files, card = uploads[0]
    assert repo == "me/cpo-test"
    assert {"README.md", "trainer_state.json", "cpo_train_config.yaml", "training_curves.png", "config.json",
            "model.safetensors", "tokenizer_config.json"} <= files
    assert card.startswith("---\n") and "# cpo-test" in card and "- a local jsonl file" in card
    assert str(tmp_path) not in card  # the local model and data are described, not named by path
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
