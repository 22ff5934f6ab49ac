"""CPOConfig: TRL's field names and defaults, clear errors for invalid values, logged rewrites."""

import dataclasses
import logging

import pytest

from cpo import CPOConfig

TRL_FIELDS = [
    "max_length", "max_completion_length", "beta", "label_smoothing", "loss_type", "disable_dropout", "cpo_alpha",
    "simpo_gamma", "alpha", "generate_during_eval", "is_encoder_decoder", "model_init_kwargs", "trust_remote_code",
    "dataset_num_proc", "learning_rate", "logging_steps", "gradient_checkpointing",
]


def test_defaults_equal_trl():
    from trl.experimental.cpo import CPOConfig as TRLConfig

    ours = {f.name: f.default for f in dataclasses.fields(CPOConfig)}
    theirs = {f.name: f.default for f in dataclasses.fields(TRLConfig)}
    for name in TRL_FIELDS:
        assert ours[name] == theirs[name], name
    assert ours["max_length"] == 1024 and ours["beta"] == 0.1 and ours["learning_rate"] == 1e-6
    assert ours["logging_steps"] == 10 and ours["gradient_checkpointing"] is True


def test_instance_defaults_and_bf16_off_on_cpu(tmp_path):
    args = CPOConfig(output_dir=str(tmp_path))
    assert args.loss_type == "sigmoid" and args.cpo_alpha == 1.0 and args.simpo_gamma == 0.5
    assert args.bf16 is False  # no GPU here: bf16 only where the hardware has it
    assert args.gradient_checkpointing is True and args.activation_checkpointing is True


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"loss_type": "dpo"}, "loss_type='dpo' is not a known loss"),
        ({"beta": -0.1}, "beta=-0.1 must be > 0"),
        ({"beta": 0.0}, "beta=0.0 must be > 0"),
        ({"label_smoothing": 0.5}, r"label_smoothing=0.5 is outside \[0, 0.5\)"),
        ({"label_smoothing": -0.1}, "label_smoothing=-0.1 is outside"),
        ({"cpo_alpha": -1.0}, "cpo_alpha=-1.0 is negative"),
        ({"simpo_gamma": -0.5}, "simpo_gamma=-0.5 is negative"),
        ({"alpha": float("nan")}, "alpha=nan is not a finite number"),
        ({"max_length": 0}, "max_length=0 must be a positive integer"),
        ({"max_length": 1}, "max_length=1 leaves no room"),
        ({"max_completion_length": -3}, "max_completion_length=-3 must be a positive integer"),
        ({"prompt_overflow": "cut"}, "prompt_overflow='cut' is not a known policy"),
        ({"invalid_rows": "ignore"}, "invalid_rows='ignore' is not a known policy"),
    ],
)
def test_invalid_values_are_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CPOConfig(output_dir=str(tmp_path), **kwargs)


def test_alphapo_is_simpo_without_nll_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cpo"):
        args = CPOConfig(output_dir=str(tmp_path), loss_type="alphapo", alpha=0.25)
    assert (args.loss_type, args.cpo_alpha, args.alpha) == ("simpo", 0.0, 0.25)
    assert "loss_type='alphapo' is SimPO with cpo_alpha=0" in caplog.text


def test_simpo_with_default_cpo_alpha_is_announced_as_cpo_simpo(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cpo"):
        CPOConfig(output_dir=str(tmp_path), loss_type="simpo")
    assert "is CPO-SimPO" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cpo"):
        CPOConfig(output_dir=str(tmp_path), loss_type="simpo", cpo_alpha=0.0)
    assert "CPO-SimPO" not in caplog.text


def test_hf_argument_parser_and_json_model_kwargs(tmp_path):
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(CPOConfig).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--loss_type", "ipo", "--beta", "0.5",
         "--model_init_kwargs", '{"dtype": "float32"}', "--gradient_checkpointing", "false"]
    )
    assert args.loss_type == "ipo" and args.beta == 0.5 and args.model_init_kwargs == {"dtype": "float32"}
    assert args.gradient_checkpointing is False and args.activation_checkpointing is False


@pytest.mark.parametrize("loss_type, alpha, warned", [("sigmoid", 0.25, True), ("hinge", -0.1, True),
                                                      ("simpo", 0.25, False), ("ipo", 0.25, False),
                                                      ("alphapo", 0.25, False), ("sigmoid", 0.0, False)])
def test_alphapo_on_summed_logps_warns_at_config_time(tmp_path, caplog, loss_type, alpha, warned):
    with caplog.at_level(logging.WARNING, logger="cpo"):
        CPOConfig(output_dir=str(tmp_path), loss_type=loss_type, alpha=alpha, report_to="none")
    said = "applies the AlphaPO reward (1 - p^-alpha) / alpha to summed log-probs" in caplog.text
    assert said == warned
    if warned:
        assert "Use loss_type='simpo' or 'ipo'" in caplog.text and "continues the reward linearly" in caplog.text
