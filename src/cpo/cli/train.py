"""`cpo train`: TRL-compatible flags, a YAML file of defaults that flags override, then train, save and plot.

The flags are every :class:`cpo.CPOConfig` field plus :class:`ScriptArguments` and :class:`ModelArguments` (TRL's
``ScriptArguments`` and ``ModelConfig``, see :mod:`cpo.cli.arguments`), parsed by ``transformers.HfArgumentParser``.
At the end the model and tokenizer are saved to ``output_dir`` with ``trainer_state.json`` and ``training_curves.png``.
"""

from __future__ import annotations

import argparse
import difflib
import logging
from dataclasses import fields
from enum import Enum
from pathlib import Path

from ..errors import UsageError
from ..extras import MissingExtraError
from .arguments import (
    LORA_FLAGS,
    ModelArguments,
    ScriptArguments,
    check_arguments,
    check_config_keys,
    ignore_bool_buffers,
    model_init_kwargs,
    peft_config_from,
    read_config,
)
from .common import subcommand_parser

logger = logging.getLogger("cpo")

CONFIG_FILE_NAME = "cpo_train_config.yaml"
EXAMPLES = """\
examples (prefs.jsonl, run.yaml and model.gguf are your own files; a Hub name such as Qwen/Qwen2-0.5B-Instruct is
downloaded, which needs internet access):
  cpo train --model_name_or_path Qwen/Qwen2-0.5B-Instruct --dataset_name prefs.jsonl --output_dir runs/cpo
  cpo train --config run.yaml --learning_rate 5e-6            # a flag overrides the same key in run.yaml
  cpo train --config run.yaml --use_peft --lora_r 8 --lora_target_modules q_proj v_proj
  cpo train --model_name_or_path model.gguf --dataset_name prefs.jsonl \\
      --dataset_train_split 'train[:1800]' --dataset_test_split 'train[1800:]' --eval_strategy steps --eval_steps 50

run.yaml holds flag names (without --) as keys, for example:
  model_name_or_path: Qwen/Qwen2-0.5B-Instruct
  dataset_name: prefs.jsonl
  output_dir: runs/cpo
  beta: 0.1
  max_steps: 100

--dataset_name takes a Hub name, a folder, or a .json/.jsonl/.csv/.parquet file (a single file is the 'train' split).
The effective configuration is printed, and saved as output_dir/cpo_train_config.yaml (reusable with --config).
"""


# `cpo train --help` lists cpo's own options first, in these groups (ScriptArguments' fields lead "data",
# ModelArguments' lead "model"), then transformers' TrainingArguments.
HELP_GROUPS = {  # the loss group is cpo.losses.loss_setting_names()
    "data": ("max_length", "max_completion_length", "prompt_overflow", "invalid_rows", "tokenize_jointly",
             "dataset_num_proc"),
    "model": ("trust_remote_code", "model_init_kwargs", "is_encoder_decoder", "disable_dropout"),
    "speed": ("chunked_logits", "logits_chunk_size", "padding_free", "prefix_sharing", "max_tokens_per_batch",
              "gradient_checkpointing_policy"),
    "checks": ("on_nonfinite", "generate_during_eval"),
}
TRAINER_GROUP = ("training: transformers' TrainingArguments (CPOConfig changes four defaults, as TRL does: "
                 "learning_rate, logging_steps, gradient_checkpointing, bf16)")


def build_parser():
    """The ``cpo train`` parser: ScriptArguments, ModelArguments and CPOConfig, plus ``--config``; the help lists
    cpo's options first, by group, then TrainingArguments'."""
    from transformers import HfArgumentParser

    from ..config import CPOConfig

    parser = subcommand_parser(
        "train", "Train a model with Contrastive Preference Optimization (and its family: SimPO, IPO, hinge).",
        EXAMPLES, parser_class=HfArgumentParser, dataclass_types=(ScriptArguments, ModelArguments, CPOConfig),
        usage="cpo train [--config run.yaml] [--OPTION VALUE ...]")
    parser.add_argument("--config", default=None, help="YAML file of defaults (keys are flag names); flags win.")
    parser.set_defaults(report_to="none")  # no surprise logins to tracking services from the command line
    _arrange_options(parser, CPOConfig)
    return parser


def _arrange_options(parser, config_class) -> None:
    """Group the options for ``--help`` (argparse prints groups in the order they were made), show each once (the
    ``-`` spelling is read as ``_`` by every ``cpo`` parser), and let an optional bool be a bare flag
    (``--disable_tqdm`` as well as ``--disable_tqdm true``)."""
    from transformers import TrainingArguments
    from transformers.hf_argparser import string_to_bool

    from ..loss_settings import loss_setting_names

    trainer_fields = {f.name for f in fields(TrainingArguments)}
    own = [f.name for f in fields(config_class) if f.init and f.name not in trainer_fields]
    placed = {name for names in HELP_GROUPS.values() for name in names} | set(loss_setting_names())
    order = [
        ("loss: CPO and its family (SimPO, AlphaPO, IPO, hinge, ARPO)", loss_setting_names()),
        ("data", (*(f.name for f in fields(ScriptArguments)), *HELP_GROUPS["data"])),
        ("model and PEFT (parameter-efficient fine-tuning: LoRA adapters)",
         (*(f.name for f in fields(ModelArguments)), *HELP_GROUPS["model"])),
        ("speed and memory", HELP_GROUPS["speed"]),
        ("checks and evaluation", HELP_GROUPS["checks"]),
        ("more cpo options", tuple(name for name in own if name not in placed)),
    ]
    options = parser._optionals._group_actions
    for action in parser._actions:
        action.option_strings = [o for o in action.option_strings if "-" not in o[2:]] or action.option_strings
        if action.type is string_to_bool and action.nargs is None:
            action.nargs, action.const = "?", True
        if isinstance(action, argparse._StoreFalseAction) and action.option_strings[0] == f"--no_{action.dest}":
            action.help = f"the same as --{action.dest} false"
    for title, names in order:
        chosen = sorted((a for a in options if a.dest in names), key=lambda a: names.index(a.dest))
        if chosen:
            parser.add_argument_group(title)._group_actions.extend(chosen)
    parser.add_argument_group(TRAINER_GROUP)._group_actions.extend(
        a for a in options if a.dest in trainer_fields)
    parser._optionals._group_actions = [a for a in options if a.dest in ("help", "config")]


def _valid_keys(parser) -> set[str]:
    return {a.dest for a in parser._actions if a.dest not in ("help", "config")}


def _command_line_keys(parser, argv: list[str]) -> set[str]:
    """The destinations that ``argv`` sets explicitly (every default suppressed)."""
    saved, saved_defaults = [(a, a.default) for a in parser._actions], parser._defaults
    try:
        parser._defaults = {}  # what set_defaults added: argparse fills it in like a default
        for a, _ in saved:
            a.default = argparse.SUPPRESS
        ns, _ = parser.parse_known_args(argv)
    finally:
        parser._defaults = saved_defaults
        for a, default in saved:
            a.default = default
    return set(vars(ns)) - {"config"}


def parse(argv: list[str]):
    """Parse ``cpo train`` arguments: defaults, then the ``--config`` YAML, then the flags.

    Returns:
        ``(script_args, model_args, cpo_config, sources, config_path)``; ``sources`` maps each key that was set to
        ``"yaml"`` or ``"command line"``.
    """
    if "-h" in argv or "--help" in argv:  # here: the parsing below suppresses the defaults that the help shows
        build_parser().parse_args(["--help"])
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    data = read_config(known.config) if known.config else {}  # sets its env: before transformers is imported
    parser = build_parser()
    check_config_keys(data, _valid_keys(parser), known.config)
    parser.set_defaults(**data)
    given = _command_line_keys(parser, argv)
    try:
        script, model, cfg, _extra, rest = parser.parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True, look_for_args_file=False)
    except ValueError as err:  # CPOConfig / TrainingArguments validation
        raise UsageError(f"Invalid training configuration: {err}") from None
    if rest:
        close = difflib.get_close_matches(rest[0].lstrip("-"), sorted(_valid_keys(parser)), n=3, cutoff=0.6)
        parser.error(f"unrecognized arguments: {' '.join(rest)}" + (f" (did you mean --{close[0]}?)" if close else ""))
    sources = {k: "yaml" for k in data} | {k: "command line" for k in given}
    check_arguments(script, model, cfg)
    return script, model, cfg, sources, known.config


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def effective_config(script, model, cfg, sources: dict[str, str]) -> dict:
    """The values of the keys set by the YAML file or the flags, as the parsed dataclasses hold them."""
    objs = (script, model, cfg)
    out = {}
    for key in sources:
        for obj in objs:
            if key in {f.name for f in fields(obj)}:
                out[key] = _plain(getattr(obj, key))
                break
    return out


def _log_config(config: dict, sources: dict[str, str], config_file: str | None) -> None:
    where = f"defaults, then {config_file}, then flags" if config_file else "defaults, then flags"
    lines = [f"cpo train: configuration ({where}; everything else is CPOConfig's default):"]
    width = max((len(k) for k in config), default=0)
    lines += [f"  {k:<{width}} = {v!r}   [{sources[k]}]" for k, v in sorted(config.items())]
    logger.info("\n".join(lines))


def _datasets(script, cfg):
    from .loading import load_dataset_dict, select_split

    if script.dataset_name is None:
        raise UsageError("No training data: give --dataset_name (or dataset_name in the --config YAML).")
    splits = load_dataset_dict(script.dataset_name, script.dataset_config, streaming=script.dataset_streaming)
    source = f"The dataset {script.dataset_name!r}"
    train = select_split(splits, script.dataset_train_split, source)
    evaluate = str(getattr(cfg.eval_strategy, "value", cfg.eval_strategy)) != "no"
    test = select_split(splits, script.dataset_test_split, source) if evaluate else None

    def count(ds):
        return f"{len(ds)}" if hasattr(ds, "__len__") else "streamed"

    logger.info(f"cpo train: {count(train)} training pairs ({script.dataset_train_split})"
                + (f", {count(test)} evaluation pairs ({script.dataset_test_split})" if test is not None else ""))
    return train, test


def run(parsed) -> int:
    """Entry point of ``cpo train`` with :func:`parse`'s result: returns the exit status."""
    script, model_args, cfg, sources, config_file = parsed
    if cfg.process_index != 0:  # under accelerate launch, one-time output comes from the main process only
        logger.setLevel(logging.WARNING)
    config = effective_config(script, model_args, cfg, sources)
    _log_config(config, sources, config_file)
    if model_args.model_name_or_path is None:
        raise UsageError("No model: give --model_name_or_path (or model_name_or_path in the --config YAML).")
    if not model_args.use_peft and any(k in sources for k in LORA_FLAGS):
        logger.warning("cpo train: LoRA settings were given without --use_peft; they are ignored.")
    checkpoint = _check_output_dir(cfg)
    train, test = _datasets(script, cfg)
    if checkpoint is not None:  # before the model loads: the data's name and size are known now
        from ..card import dataset_names
        from ..runs import check_resume, run_settings

        check_resume(checkpoint, run_settings(cfg, dataset_names(train)), cfg.resume_anyway)

    from ..trainer import CPOTrainer
    from .loading import load_model_and_tokenizer

    init_kwargs = model_init_kwargs(model_args, cfg)
    cfg.model_init_kwargs = None  # applied here: the trainer gets a loaded model
    model, tokenizer = load_model_and_tokenizer(model_args.model_name_or_path, init_kwargs=init_kwargs,
                                                merge_adapter=False)
    try:
        trainer = CPOTrainer(model=model, args=cfg, train_dataset=train, eval_dataset=test,
                             processing_class=tokenizer, peft_config=peft_config_from(model_args))
    except ValueError as err:  # rows and settings are validated here, with the row and the field named
        raise UsageError(str(err)) from None
    if script.ignore_bias_buffers:
        ignore_bool_buffers(trainer.model)
    trainer.train(resume_from_checkpoint=checkpoint)
    save_outputs(trainer, config, script.dataset_name)
    return 0


def _check_output_dir(cfg):
    """What CPOTrainer.train will check, checked before anything loads: the checkpoint to resume from (or None), or
    a refusal of an output_dir that holds another run (nothing is deleted here)."""
    from ..runs import prepare_output_dir, resolve_resume

    checkpoint = resolve_resume(cfg.resume_from_checkpoint, cfg.output_dir)
    if checkpoint is None:
        prepare_output_dir(cfg.output_dir, cfg.overwrite_output_dir, clear=False)
    return checkpoint


def save_outputs(trainer, config: dict, dataset_name: str | None) -> None:
    """Write everything ``cpo train`` leaves in ``output_dir``: the model and tokenizer, ``README.md`` (the card),
    ``trainer_state.json``, ``cpo_train_config.yaml`` and ``training_curves.png``. With ``push_to_hub`` the folder is
    uploaded once, after all of them are in place. Every process calls this (saving may gather sharded weights);
    only the main one writes the card, the YAML and the curves."""
    from ..files import atomic_write
    from ..plot import plot_training_curves

    args = trainer.args
    out, png = Path(args.output_dir), Path(args.output_dir) / "training_curves.png"
    trainer.save_state()
    if trainer.is_world_process_zero():
        import yaml

        with atomic_write(out / CONFIG_FILE_NAME) as f:
            f.write(yaml.safe_dump(config, sort_keys=True, allow_unicode=True))
        try:
            plot_training_curves([out], png)
        except MissingExtraError as err:  # the trained model matters more than its figure: say so, and go on
            logger.warning(f"cpo train: no {png.name}: {err}")
    if args.push_to_hub:  # Trainer.push_to_hub saves the model, writes the card, then uploads the folder
        trainer.push_to_hub(dataset_name=dataset_name)
    else:
        trainer.save_model(str(out))
        if trainer.is_world_process_zero():
            trainer.create_model_card(dataset_name=dataset_name, output_dir=str(out))
    logger.info(f"cpo train: saved the model and tokenizer to {out}" + (f"; curves in {png}" if png.is_file() else "")
                + (f"; pushed to the Hub as {trainer.hub_model_id}" if args.push_to_hub else ""))
