"""One place per loss setting: cpo.losses.LossSettings declares each (name, default, help), and every consumer reads
it from there. If a setting is added to the loss module, each of these fails until its consumer has it."""

import ast
from dataclasses import fields
from pathlib import Path

import pytest
from helpers import ROOT, train_args

from cpo import CPOConfig
from cpo.card import model_card
from cpo.cli import eval as eval_cli
from cpo.cli import train as train_cli
from cpo.loss_settings import LossSettings, loss_setting_names

NAMES = loss_setting_names()


def test_the_declaration_covers_the_objectives_settings():
    assert set(NAMES) >= {"loss_type", "beta", "label_smoothing", "simpo_gamma", "alpha", "cpo_alpha", "arpo",
                          "arpo_c1", "arpo_c2"}


@pytest.mark.parametrize("name", NAMES)
def test_the_config_takes_name_default_and_help_from_the_declaration(name):
    declared = {f.name: f for f in fields(LossSettings)}[name]
    config = {f.name: f for f in fields(CPOConfig)}[name]
    assert config.default == declared.default and config.metadata["help"] == declared.metadata["help"]
    assert getattr(LossSettings.of(CPOConfig(output_dir="x")), name) == declared.default


def test_cpo_eval_has_a_flag_for_every_setting_with_its_help():
    actions = {a.dest: a for a in eval_cli.build_parser()._actions}
    for f in fields(LossSettings):
        assert f.name in actions, f.name
        assert actions[f.name].help.startswith(f.metadata["help"])
    assert set(NAMES) <= set(eval_cli.loss_keys())


def test_cpo_train_help_lists_every_setting_in_its_loss_group():
    parser = train_cli.build_parser()
    loss_group = next(g for g in parser._action_groups if g.title.startswith("loss"))
    assert {a.dest for a in loss_group._group_actions} == set(NAMES)


def test_the_model_card_has_a_row_for_every_setting(tmp_path):
    args = train_args(tmp_path, arpo=True, arpo_c1=1.1)
    card = model_card(args, model_name="m", base_model=None, datasets=[], log_history=[])
    for name in NAMES:
        assert f"| `{name}` | " in card, name
    assert "ARPO's adaptive rejection (X-ALMA; c1=1.1, c2=0.4)" in card and "eprint = {2410.03115}" in card


def test_no_module_but_the_loss_module_spells_out_which_losses_average_log_probs():
    """The rule "ipo and simpo use per-token means" lives in cpo.losses.uses_average_logps: a tuple or set of
    loss-type names anywhere else (the demo once had its own copy) is a second copy of it."""
    found = []
    for path in sorted((ROOT / "src" / "cpo").rglob("*.py")):
        if path.name in ("losses.py",):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Tuple, ast.Set, ast.List)):
                names = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if {"ipo", "simpo"} <= names and "sigmoid" not in names:
                    found.append(f"{Path(path).relative_to(ROOT)}:{node.lineno}")
    assert found == []
