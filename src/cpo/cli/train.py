"""`cpo train`: TRL-compatible flags, a YAML file of defaults that flags override, then train, save and plot.

The flags are every :class:`cpo.CPOConfig` field plus :class:`ScriptArguments` and :class:`ModelArguments` (the names
of TRL's ``ScriptArguments`` and ``ModelConfig``), parsed by ``transformers.HfArgumentParser``. At the end the model
and tokenizer are saved to ``output_dir`` with ``trainer_state.json`` and ``training_curves.png``.
"""

from __future__ import annotations

import argparse
import difflib
import logging
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path

from ..errors import UsageError
from .common import subcommand_parser

logger = logging.getLogger("cpo")

CONFIG_FILE_NAME = "cpo_train_config.yaml"
LORA_FLAGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_task_type")
EXAMPLES = """\
examples:
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


@dataclass
class ScriptArguments:
    """Where the data comes from (TRL's ``ScriptArguments`` names)."""

    dataset_name: str | None = field(default=None, metadata={
        "help": "Preference data: a Hub name, a local folder, or a .json/.jsonl/.csv/.parquet file."})
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a Hub dataset."})
    dataset_train_split: str = field(default="train", metadata={
        "help": "Training split; may be sliced: 'train[:1800]', 'train[:90%%]'."})
    dataset_test_split: str = field(default="test", metadata={
        "help": "Evaluation split, used when eval_strategy is not 'no'; may be sliced: 'train[1800:]'."})


@dataclass
class ModelArguments:
    """The model and its optional LoRA adapter (TRL's ``ModelConfig`` names). ``trust_remote_code`` is
    CPOConfig's field."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "A Hub name, a folder saved with save_pretrained, or a .gguf file (dequantised to train)."})
    dtype: str | None = field(default=None, metadata={
        "help": "Weights dtype when loading; default: the checkpoint's.",
        "choices": ["auto", "float32", "bfloat16", "float16"]})
    attn_implementation: str | None = field(default=None, metadata={
        "help": "Attention kernel, e.g. sdpa, eager, flash_attention_2."})
    use_peft: bool = field(default=False, metadata={"help": "Train a LoRA adapter instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "Module names to adapt, e.g. q_proj v_proj, or all-linear; default: peft's choice for the model."})
    lora_task_type: str = field(default="CAUSAL_LM", metadata={"help": "peft task type (SEQ_2_SEQ_LM for T5)."})


def build_parser():
    """The ``cpo train`` parser: ScriptArguments, ModelArguments and CPOConfig, plus ``--config``."""
    from transformers import HfArgumentParser

    from ..config import CPOConfig

    parser = subcommand_parser(
        "train", "Train a model with Contrastive Preference Optimization (and its family: SimPO, IPO, hinge).",
        EXAMPLES, parser_class=HfArgumentParser, dataclass_types=(ScriptArguments, ModelArguments, CPOConfig))
    parser.add_argument("--config", default=None, help="YAML file of defaults (keys are flag names); flags win.")
    parser.set_defaults(report_to="none")  # no surprise logins to tracking services from the command line
    return parser


def _valid_keys(parser) -> set[str]:
    return {a.dest for a in parser._actions if a.dest not in ("help", "config")}


def yaml_defaults(path: str, valid: set[str]) -> dict:
    """The YAML file's mapping, every key a known flag name.

    Raises:
        UsageError: a missing or malformed file, or an unknown key (with the closest known names).
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"The config file {path!r} does not exist.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UsageError(f"The config file {path!r} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"The config file {path!r} must be a mapping of flag names to values, not a "
                         f"{type(data).__name__}.")
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), sorted(valid), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else " Run `cpo train --help` for the names."
            raise UsageError(f"The config file {path!r} has an unknown key {key!r}.{hint}")
    return data


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
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    parser = build_parser()
    data = yaml_defaults(known.config, _valid_keys(parser)) if known.config else {}
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


def peft_config_from(model_args):
    """The LoRA config of ``--use_peft`` and the ``--lora_*`` flags, or None."""
    if not model_args.use_peft:
        return None
    try:
        from peft import LoraConfig
    except ImportError:
        raise UsageError("--use_peft needs the peft package: pip install 'cpo[peft]'.") from None
    return LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                      target_modules=model_args.lora_target_modules, task_type=model_args.lora_task_type, bias="none")


def _datasets(script, cfg):
    from .loading import load_dataset_dict, select_split

    if script.dataset_name is None:
        raise UsageError("No training data: give --dataset_name (or dataset_name in the --config YAML).")
    splits = load_dataset_dict(script.dataset_name, script.dataset_config)
    source = f"The dataset {script.dataset_name!r}"
    train = select_split(splits, script.dataset_train_split, source)
    evaluate = str(getattr(cfg.eval_strategy, "value", cfg.eval_strategy)) != "no"
    test = select_split(splits, script.dataset_test_split, source) if evaluate else None
    logger.info(f"cpo train: {len(train)} training pairs ({script.dataset_train_split})"
                + (f", {len(test)} evaluation pairs ({script.dataset_test_split})" if test is not None else ""))
    return train, test


def run(parsed) -> int:
    """Entry point of ``cpo train`` with :func:`parse`'s result: returns the exit status."""
    script, model_args, cfg, sources, config_file = parsed
    config = effective_config(script, model_args, cfg, sources)
    _log_config(config, sources, config_file)
    if model_args.model_name_or_path is None:
        raise UsageError("No model: give --model_name_or_path (or model_name_or_path in the --config YAML).")
    if not model_args.use_peft and any(k in sources for k in LORA_FLAGS):
        logger.warning("cpo train: LoRA settings were given without --use_peft; they are ignored.")
    train, test = _datasets(script, cfg)

    from ..plot import plot_training_curves
    from ..trainer import CPOTrainer
    from .loading import load_model_and_tokenizer

    init_kwargs = cfg.model_init_kwargs if isinstance(cfg.model_init_kwargs, dict) else None
    cfg.model_init_kwargs = None  # applied here: the trainer gets a loaded model
    model, tokenizer = load_model_and_tokenizer(
        model_args.model_name_or_path, dtype=model_args.dtype, attn_implementation=model_args.attn_implementation,
        trust_remote_code=cfg.trust_remote_code, init_kwargs=init_kwargs, merge_adapter=False)
    try:
        trainer = CPOTrainer(model=model, args=cfg, train_dataset=train, eval_dataset=test,
                             processing_class=tokenizer, peft_config=peft_config_from(model_args))
    except ValueError as err:  # rows and settings are validated here, with the row and the field named
        raise UsageError(str(err)) from None
    trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    trainer.save_model(cfg.output_dir)
    trainer.save_state()
    if trainer.is_world_process_zero():
        trainer.create_model_card(dataset_name=script.dataset_name, output_dir=cfg.output_dir)
    if trainer.is_world_process_zero():
        out = Path(cfg.output_dir)
        import yaml

        (out / CONFIG_FILE_NAME).write_text(yaml.safe_dump(config, sort_keys=True, allow_unicode=True), "utf-8")
        png = plot_training_curves([out], out / "training_curves.png")
        logger.info(f"cpo train: saved the model and tokenizer to {out}; curves in {png}")
    return 0
