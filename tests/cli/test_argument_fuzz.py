"""Argument fuzz (issue 20): every numeric option of every subcommand, given 0, -1, NaN, inf or a huge value, is
refused cleanly when it is parsed (argparse's exit status 2 or a UsageError: one line, no traceback) or accepted as
a finite number. Parse level only: nothing is loaded, so a bad value can never reach a model."""

import argparse
import importlib
import math

import pytest

from cpo.cli import COMMANDS
from cpo.errors import UsageError

VALUES = ("0", "-1", "nan", "inf", "-inf", "1e30")
# the arguments each subcommand needs to parse at all (no file is read while parsing)
BASE = {
    "train": ["--output_dir", "{tmp}/out"],
    "generate": ["--model_name_or_path", "m", "--src", "s", "--output", "{tmp}/c.jsonl"],
    "prefs": ["--output", "{tmp}/o.jsonl"],
    "eval": ["--mode", "preference", "--model_name_or_path", "{tmp}/m"],
    "plot": ["{tmp}/run"],
    "demo": [],
}
NOT_USER_FLAGS = {"local_rank"}  # set by launchers; 0 is a real process rank


def numeric_options(parser) -> list[str]:
    """The dests of the options that take one number (plain int/float, or cpo.cli.common.number)."""
    out = []
    for action in parser._actions:
        kind = action.type if action.type in (int, float) else getattr(action.type, "__name__", None)
        if action.option_strings and kind in (int, float, "int", "float") and action.dest not in NOT_USER_FLAGS:
            out.append(action.dest)
    return sorted(set(out))


@pytest.fixture(scope="module")
def parsers():
    return {name: importlib.import_module(f"cpo.cli.{name}").build_parser() for name in COMMANDS}


def test_every_subcommand_is_fuzzed(parsers):
    assert set(BASE) == set(COMMANDS)
    found = {name: numeric_options(p) for name, p in parsers.items()}
    assert {"per_device_train_batch_size", "learning_rate", "num_train_epochs", "save_total_limit",
            "beta"} <= set(found["train"])
    assert {"scorer_batch_size", "threshold", "seed"} <= set(found["prefs"])
    assert {"temperature", "top_p", "top_k", "num_samples"} <= set(found["generate"])
    assert {"threads", "seeds"} <= set(found["demo"]) and {"max_length", "beta", "batch_size"} <= set(found["eval"])


def parsed_value(parsed, dest):
    for obj in parsed if isinstance(parsed, tuple) else (parsed,):
        if hasattr(obj, dest):
            return getattr(obj, dest)
    raise AssertionError(f"{dest} not in the parsed arguments")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_numeric_options_are_refused_or_finite(command, parsers, tmp_path, monkeypatch, capsys):
    module = importlib.import_module(f"cpo.cli.{command}")
    parser = parsers[command]
    monkeypatch.setattr(module, "build_parser", lambda: parser)  # built once: parsing only, as `cpo` does
    translate_only = set(getattr(module, "_MODE_ONLY", {}).get("translate", ()))
    outcomes = {}
    for dest in numeric_options(parser):
        base = [a.format(tmp=tmp_path) for a in BASE[command]]
        if dest in translate_only:
            base[1] = "translate"
        for value in VALUES:
            argv = [*base, f"--{dest}", value]
            capsys.readouterr()  # what an accepted value logged before (a warning) is not this refusal's output
            try:
                parsed = module.parse(argv) if hasattr(module, "parse") else parser.parse_args(argv)
            except SystemExit as exit_:  # argparse's refusal, in one line
                assert exit_.code == 2, argv
                err = capsys.readouterr().err
                assert f"--{dest}" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
                outcomes[dest, value] = "refused"
                continue
            except UsageError as err:
                assert "\n" not in str(err).strip(), (argv, str(err))
                outcomes[dest, value] = "refused"
                continue
            got = parsed_value(parsed, dest)
            assert isinstance(got, (int, float)) and math.isfinite(got), (argv, got)
            outcomes[dest, value] = "accepted"
    assert not any(outcomes.get((d, v)) == "accepted" for d in numeric_options(parser) for v in ("nan", "inf"))
    positive = {"per_device_train_batch_size", "gradient_accumulation_steps", "batch_size", "scorer_batch_size",
                "threads", "seeds", "num_samples", "max_new_tokens", "num_beams", "limit", "max_length"}
    assert not any(outcomes.get((d, v)) == "accepted" for d in positive for v in ("0", "-1"))


def test_the_type_names_the_flag_value_and_range():
    from cpo.cli.common import number

    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--n", type=number(int, 1))
    with pytest.raises(argparse.ArgumentError, match=r"argument --n: 0 is out of range: give an integer >= 1"):
        parser.parse_args(["--n", "0"])
