"""TRL's script arguments for `cpo train` and examples/train_cpo.py: the dataclasses, the ``--config`` YAML, and
what they become (the LoRA config, the bitsandbytes config, the ``from_pretrained`` keyword arguments).

:class:`ScriptArguments` and :class:`ModelArguments` have the fields, names and defaults of TRL's ``ScriptArguments``
and ``ModelConfig`` (``dtype`` excepted: None keeps the checkpoint's dtype where TRL loads float32), so a TRL recipe
runs unchanged. Each field takes effect as in TRL's scripts, or is refused before anything loads.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..extras import require

# older TRL recipes spell dtype as torch_dtype
ALIASES = {"torch_dtype": "dtype"}


@dataclass
class ScriptArguments:
    """Where the data comes from (TRL's ``ScriptArguments``)."""

    dataset_name: str | None = field(default=None, metadata={
        "help": "Preference data: a Hub name, a local folder, or a .json/.jsonl/.csv/.parquet file."})
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a Hub dataset."})
    dataset_train_split: str = field(default="train", metadata={
        "help": "Training split; may be sliced: 'train[:1800]', 'train[:90%%]'."})
    dataset_test_split: str = field(default="test", metadata={
        "help": "Evaluation split, used when eval_strategy is not 'no'; may be sliced: 'train[1800:]'."})
    dataset_streaming: bool = field(default=False, metadata={
        "help": "Read the dataset as a stream (an IterableDataset, rows tokenized as training reaches them); needs "
                "max_steps, and slices in row counts ('train[:1000]')."})
    ignore_bias_buffers: bool = field(default=False, metadata={
        "help": "Under DDP, leave the model's bool buffers (attention masks) out of DDP's buffer broadcast, as TRL's "
                "scripts do: a fix for 'invalid scalar type' errors with such models."})


@dataclass
class ModelArguments:
    """The model, how it loads, and its optional LoRA adapter (TRL's ``ModelConfig``). ``trust_remote_code`` is
    CPOConfig's field."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "A Hub name, a folder saved with save_pretrained, or a .gguf file (dequantised to train)."})
    model_revision: str = field(default="main", metadata={
        "help": "Hub revision of the model and its tokenizer: a branch, tag or commit (a local model has none)."})
    dtype: str | None = field(default=None, metadata={
        "help": "Weights dtype when loading; default: the checkpoint's.", "aliases": ["--torch_dtype"],
        "choices": ["auto", "float32", "bfloat16", "float16"]})
    attn_implementation: str | None = field(default=None, metadata={
        "help": "Attention kernel, e.g. sdpa, eager, flash_attention_2."})
    use_peft: bool = field(default=False, metadata={"help": "Train a LoRA adapter instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "Module names to adapt, e.g. q_proj v_proj, or all-linear; default: peft's choice for the model."})
    lora_target_parameters: list[str] | None = field(default=None, metadata={
        "help": "Parameter names to adapt directly (peft's target_parameters, e.g. MoE expert weights)."})
    lora_modules_to_save: list[str] | None = field(default=None, metadata={
        "help": "Modules trained in full and saved with the adapter (peft's modules_to_save), e.g. lm_head."})
    lora_task_type: str = field(default="CAUSAL_LM", metadata={"help": "peft task type (SEQ_2_SEQ_LM for T5)."})
    use_rslora: bool = field(default=False, metadata={
        "help": "Rank-stabilised LoRA: scale the adapter by lora_alpha/sqrt(r) instead of lora_alpha/r."})
    use_dora: bool = field(default=False, metadata={
        "help": "DoRA: train each adapted weight's magnitude apart from its LoRA direction (linear layers)."})
    load_in_8bit: bool = field(default=False, metadata={
        "help": "Load the base model in 8 bit with bitsandbytes (LoRA only)."})
    load_in_4bit: bool = field(default=False, metadata={
        "help": "Load the base model in 4 bit with bitsandbytes (QLoRA; LoRA only)."})
    bnb_4bit_quant_type: str = field(default="nf4", metadata={
        "help": "4-bit quantisation type.", "choices": ["fp4", "nf4"]})
    use_bnb_nested_quant: bool = field(default=False, metadata={
        "help": "4 bit: quantise the quantisation constants too (bitsandbytes double quantisation)."})
    bnb_4bit_quant_storage: str | None = field(default=None, metadata={
        "help": "4 bit: dtype the packed weights are stored in, e.g. uint8, bfloat16."})


LORA_FLAGS = tuple(f for f in ModelArguments.__dataclass_fields__ if f.startswith("lora_")) + ("use_rslora", "use_dora")
QUANTIZATION_FLAGS = ("load_in_8bit", "load_in_4bit", "bnb_4bit_quant_type", "use_bnb_nested_quant",
                      "bnb_4bit_quant_storage")


def read_config(path: str) -> dict:
    """The ``--config`` YAML file's mapping of flag names to values, as TRL's ``TrlParser`` reads it: its ``env:``
    mapping is set into ``os.environ`` at once (call this before importing what reads the environment) and left
    out; ``torch_dtype`` is read as ``dtype``. Check the names with :func:`check_config_keys`.

    Raises:
        UsageError: a missing or malformed file, or an ``env`` that is not a mapping.
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
    env = data.pop("env", None) or {}
    if not isinstance(env, dict):
        raise UsageError(f"The config file {path!r} has an env that is not a mapping of variable names to values.")
    for key, value in env.items():
        os.environ[str(key)] = str(value)
    for alias, name in ALIASES.items():
        if alias in data:
            if name in data:
                raise UsageError(f"The config file {path!r} sets both {alias!r} and {name!r}; keep {name!r}.")
            data[name] = data.pop(alias)
    return data


def check_config_keys(data: dict, valid: set[str], path: str) -> dict:
    """``data`` (from :func:`read_config`) when every key is one of ``valid``.

    Raises:
        UsageError: an unknown key, with the closest known names.
    """
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), sorted(valid), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else " Run `cpo train --help` for the names."
            raise UsageError(f"The config file {path!r} has an unknown key {key!r}.{hint}")
    return data


def check_arguments(script: ScriptArguments, model_args: ModelArguments, cfg) -> None:
    """Refuse, before anything loads, what the run cannot do: LoRA numbers out of range, both 4 and 8 bit, a quantised model without LoRA, a
    stream without max_steps or with token-budget batches, or a model that cannot honour its loading arguments.

    Raises:
        UsageError: one line saying what to change.
    """
    for name, ok, allowed in (("lora_r", model_args.lora_r >= 1, "an integer >= 1"),
                              ("lora_alpha", model_args.lora_alpha >= 1, "an integer >= 1"),
                              ("lora_dropout", 0 <= model_args.lora_dropout < 1, "a number in [0, 1)")):
        if not ok:  # NaN fails every comparison, so it lands here too
            raise UsageError(f"--{name} {getattr(model_args, name)} is out of range: give {allowed}.")
    if model_args.load_in_4bit and model_args.load_in_8bit:
        raise UsageError("load_in_4bit and load_in_8bit are both set: choose one.")
    if (model_args.load_in_4bit or model_args.load_in_8bit) and not model_args.use_peft:
        raise UsageError("A model loaded in 4 or 8 bit cannot be trained itself: add --use_peft to train a LoRA "
                         "adapter on it (QLoRA).")
    if script.dataset_streaming and cfg.max_steps <= 0:
        raise UsageError("dataset_streaming needs max_steps > 0: a stream has no length to count epochs in.")
    if script.dataset_streaming and cfg.max_tokens_per_batch is not None:
        raise UsageError("dataset_streaming cannot be combined with max_tokens_per_batch: token-budget batches are "
                         "planned from the lengths of all rows.")
    if model_args.model_name_or_path is not None:
        from .loading import check_model_source

        check_model_source(model_args.model_name_or_path, model_init_kwargs(model_args, cfg))


def peft_config_from(model_args: ModelArguments):
    """The LoRA config of ``--use_peft`` and the ``--lora_*``, ``--use_rslora`` and ``--use_dora`` flags, or None."""
    if not model_args.use_peft:
        return None
    LoraConfig = require("peft", "peft", "--use_peft").LoraConfig
    targets = model_args.lora_target_modules
    if targets is not None and len(targets) == 1 and targets[0] == "all-linear":
        targets = "all-linear"  # peft reads the shorthand only as a string
    extra = {}
    if model_args.lora_target_parameters is not None:  # peft >= 0.17; passed only when asked for, as TRL does
        extra["target_parameters"] = model_args.lora_target_parameters
    return LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                      target_modules=targets, task_type=model_args.lora_task_type, bias="none",
                      use_rslora=model_args.use_rslora, use_dora=model_args.use_dora,
                      modules_to_save=model_args.lora_modules_to_save, **extra)


def quantization_config_from(model_args: ModelArguments):
    """The ``BitsAndBytesConfig`` of ``--load_in_4bit``/``--load_in_8bit`` (as TRL's ``get_quantization_config``;
    4-bit computes in ``dtype``), or None."""
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return None
    from transformers import BitsAndBytesConfig

    if model_args.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = model_args.dtype if model_args.dtype not in (None, "auto") else None
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=compute,
                              bnb_4bit_quant_type=model_args.bnb_4bit_quant_type,
                              bnb_4bit_use_double_quant=model_args.use_bnb_nested_quant,
                              bnb_4bit_quant_storage=model_args.bnb_4bit_quant_storage)


def model_init_kwargs(model_args: ModelArguments, cfg) -> dict:
    """The ``from_pretrained`` keyword arguments of a run: CPOConfig's ``model_init_kwargs``, then the flags
    (``dtype``, ``attn_implementation`` when given, ``trust_remote_code``, the revision unless the kwargs name one) and
    the bitsandbytes config; on a GPU each process loads its quantised copy onto its own device."""
    kwargs = dict(cfg.model_init_kwargs) if isinstance(cfg.model_init_kwargs, dict) else {}
    for key in ("dtype", "attn_implementation"):
        if getattr(model_args, key) is not None:
            kwargs[key] = getattr(model_args, key)
    if cfg.trust_remote_code:
        kwargs["trust_remote_code"] = True
    kwargs.setdefault("revision", model_args.model_revision)
    quantization = quantization_config_from(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        import torch

        if torch.cuda.is_available():
            kwargs.setdefault("device_map", {"": cfg.local_process_index})
    return kwargs


def ignore_bool_buffers(model) -> list[str]:
    """What TRL's scripts do for ``ignore_bias_buffers``: list the model's bool buffers (causal masks) in
    ``_ddp_params_and_buffers_to_ignore``, which DDP then leaves out of its broadcast. Returns their names."""
    import torch

    names = [name for name, buffer in model.named_buffers() if buffer.dtype == torch.bool]
    model._ddp_params_and_buffers_to_ignore = names
    return names
