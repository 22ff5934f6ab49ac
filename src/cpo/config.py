"""CPOConfig: TRL 1.16's CPO fields, names and defaults on top of ``transformers.TrainingArguments``, validated."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from transformers import TrainingArguments

from .checkpointing import POLICIES
from .loss_settings import LossSettings
from .losses import LOSS_TYPES, summed_alphapo_note

logger = logging.getLogger("cpo")

_CONFIG_LOSS_TYPES = (*LOSS_TYPES, "alphapo")
# TrainingArguments' numbers that transformers checks only once the model is loaded, or never: what each allows.
# Every float must also be finite. (num_train_epochs > 0 is checked apart: it matters only without max_steps.)
_TRAINER_NUMBERS = {
    **dict.fromkeys(("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "eval_accumulation_steps", "save_total_limit", "dataloader_prefetch_factor",
                     "torch_empty_cache_steps", "ddp_bucket_cap_mb", "ddp_timeout"), (">= 1", lambda v: v >= 1)),
    **dict.fromkeys(("learning_rate", "warmup_steps", "weight_decay", "max_grad_norm", "adam_epsilon",
                     "neftune_noise_alpha", "eval_delay", "dataloader_num_workers"),
                    (">= 0", lambda v: v >= 0)),
    **dict.fromkeys(("seed", "data_seed"), ("in [0, 2**32)", lambda v: 0 <= v < 2**32)),  # numpy's seed range
    **dict.fromkeys(("logging_steps", "save_steps", "eval_steps"), ("> 0", lambda v: v > 0)),
    **dict.fromkeys(("adam_beta1", "adam_beta2", "label_smoothing_factor"), ("in [0, 1)", lambda v: 0 <= v < 1)),
}
_LOSS_FIELDS = {f.name: f for f in fields(LossSettings)}


def _loss_field(name: str, **metadata):
    """A CPOConfig field of the loss settings: its default and help as :class:`cpo.losses.LossSettings` declares."""
    declared = _LOSS_FIELDS[name]
    return field(default=declared.default, metadata={**declared.metadata, **metadata})


def accelerator_available() -> bool:
    """A CUDA, XPU, NPU or MPS device is present."""
    if torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()):
        return True
    if hasattr(torch, "npu") and torch.npu.is_available():
        return True
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def bf16_supported() -> bool:
    """True on accelerators with native bf16 (CUDA compute capability >= 8.0, XPU, NPU); False on CPU and MPS.

    A CPU can run bf16, but without bf16 units a bf16 matmul is far slower than fp32, so we never turn it on there.
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return True
    return hasattr(torch, "npu") and torch.npu.is_available()


@dataclass
class CPOConfig(TrainingArguments):
    r"""Configuration of :class:`cpo.CPOTrainer`.

    The CPO fields keep the names, meanings and defaults of TRL 1.16's ``trl.experimental.cpo.CPOConfig``, so a TRL
    script switches by changing its import. Four ``TrainingArguments`` defaults differ, as in TRL:
    ``learning_rate=1e-6``, ``logging_steps=10``, ``gradient_checkpointing=True`` and ``bf16`` (see below).

    Parameters:
        max_length: maximum tokens of prompt + completion per sequence (default 1024). ``None`` means no limit.
            When it is hit, completions are cut at the end. A prompt that alone leaves no room for a completion is
            handled as ``prompt_overflow`` says; TRL leaves such rows with an empty completion and a NaN loss.
        max_completion_length: maximum tokens of each completion; ``None`` means only ``max_length`` applies
            (encoder-decoder models then use 128, as TRL does).
        beta: temperature of the preference loss; tau of IPO. Must be > 0.
        label_smoothing: conservative label smoothing of the sigmoid and simpo losses, in [0, 0.5).
        loss_type: ``sigmoid`` (CPO, arXiv 2401.08417 Eq. 3), ``hinge`` (SLiC), ``ipo`` (arXiv 2310.12036 Eq. 17),
            ``simpo`` (arXiv 2405.14734; with ``cpo_alpha > 0`` this is CPO-SimPO), ``alphapo`` (arXiv 2501.03884;
            the same as ``simpo`` with ``cpo_alpha=0``, which is logged) or ``sft`` (ours: no preference term, only
            the NLL of the chosen completion times ``cpo_alpha``; the CPO paper's SFT baseline).
        disable_dropout: turn every dropout off in the model.
        cpo_alpha: weight of the behaviour-cloning (NLL) regulariser on the chosen completions.
        simpo_gamma: SimPO's target reward margin.
        alpha: AlphaPO reward shape for every loss type; 0 uses the log-prob reward.
        generate_during_eval: generate completions for a few evaluation prompts at each evaluation and log them.
        is_encoder_decoder: whether the model is encoder-decoder, for ``model_init`` users.
        model_init_kwargs: keyword arguments of ``AutoModelForCausalLM.from_pretrained`` when ``model`` is a name or
            path (a dict, or a JSON string on the command line).
        trust_remote_code: forwarded to ``from_pretrained``.
        dataset_num_proc: processes used to tokenize the dataset.
        bf16: ``None`` (default) turns bf16 mixed precision on only where the hardware has native bf16: a CUDA GPU of
            compute capability 8.0 or newer, XPU or NPU, and never on CPU, where bf16 matmuls are far slower than
            fp32. TRL turns it on whenever ``fp16`` is off, which fails on a CPU-only machine.

    Beyond TRL, in the objective:
        arpo: ARPO, adaptive rejection (X-ALMA, arXiv 2410.03115): the preference term uses ``r_c - g * r_r`` with
            ``g = min(arpo_c1 * exp(arpo_c2 * |m_c - m_r|) - 1, 1)``, ``m`` the per-token mean log-probs, taken once
            (under ``simpo`` too), and ``g`` carrying gradient as in the released code. Logged as ``arpo/gamma``.
        arpo_c1, arpo_c2: ARPO's constants; the defaults 0.9 and 0.4 are the X-ALMA code's (see docs/cli.md).

    Beyond TRL:
        gradient_checkpointing_policy: what a checkpointed layer keeps for the backward pass (see
            :mod:`cpo.checkpointing`): ``selective`` keeps the outputs of its matmuls and attention kernel and
            recomputes only the element-wise ops between them, so no matmul runs twice; ``mlp`` checkpoints only the
            layer's MLP, selectively, and keeps the attention block's activations; ``full`` keeps nothing and runs
            the whole layer again (transformers' and TRL's behaviour, the least memory). ``None`` (default) is
            ``mlp``, or ``full`` where ``gradient_checkpointing_kwargs`` ask for ``use_reentrant=True`` or give a
            ``context_fn``. It does not change what ``gradient_checkpointing`` means, and has no effect when it is
            off.
        chunked_logits: compute log-probs from hidden states chunk by chunk, never materialising the ``(B, T, V)``
            logits, and only at completion positions (default on; the trainer falls back to the model's own head,
            with a logged reason, where the head is not a plain linear layer).
        logits_chunk_size: positions per chunk; ``None`` sizes a chunk at about 32 MiB of fp32 logits, and at least
            256 positions.
        padding_free: concatenate the sequences of a batch into rows without padding, with position ids restarting
            at each sequence and attention that never crosses a sequence boundary. ``None`` (default) turns it on
            where a probe batch verifies it with the model's attention implementation; ``True`` requires it.
        prefix_sharing: lay each pair out once as ``prompt + chosen + rejected`` (the rejected tokens attend to the
            prompt, not to the chosen tokens), so the prompt is computed once per pair. ``None`` (default) turns it on
            where verified; ``True`` requires it. Both are off for encoder-decoder models and MoE models whose router
            aux loss needs a padding mask. On an sdpa model both run as fused causal attention over each sequence
            (``prompt + chosen``, ``prompt + rejected``; see :mod:`cpo.path_attention`), with no ``(L, L)`` mask,
            and pack the whole batch into one row; on an eager model, with a dense block mask.
        max_tokens_per_batch: build training micro-batches by a token budget (tokens as laid out) instead of a fixed
            number of pairs, so each forward pass costs about the same; ``per_device_train_batch_size`` then caps the
            pairs of a micro-batch. An optimiser step still takes ``gradient_accumulation_steps`` micro-batches per
            process; its number of pairs varies, is logged at the start and as ``pairs_per_step``.
        on_nonfinite: a NaN or inf loss or gradient norm ``raise`` (default) stops training with an error naming the
            optimiser step and its dataset rows, before anything is applied; ``skip`` drops that step's gradients
            (no weight or optimiser-state change), counts it and logs it. Non-finite weights are never saved.
        prompt_overflow: what to do with a prompt that alone fills ``max_length``: ``keep_end`` keeps its last
            tokens (and its BOS) so that completions get up to half of ``max_length``; ``drop`` removes the row. Either
            way the number of rows affected is logged.
        tokenize_jointly: tokenize ``prompt + answer`` as one string, as TRL 1.16 does, instead of apart (the
            default, which gives the prompt the tokens generation gives it). Where the answer does not start with a
            space, a token can merge across the boundary (Qwen2: "offer." + "I am" gives ``.I``); with this option
            the ids, and the tokens scored, are TRL's. Decoder-only models.
        invalid_rows: ``raise`` (default) stops at the first malformed row with a message naming the row, the field
            and the fix; ``skip`` drops malformed rows, counts them and logs the count and the first reasons.
        overwrite_output_dir: clear the previous run's files from ``output_dir`` first; without it ``train()``
            refuses an ``output_dir`` that holds another run's checkpoints, model or files (see :mod:`cpo.runs`).
        resume_anyway: resume from a checkpoint whose saved loss settings, token limits or data differ from this
            run's (refused otherwise), logging the differences. ``resume_from_checkpoint`` takes a path or ``true``
            (the latest checkpoint of ``output_dir``).
    """

    _VALID_DICT_FIELDS = [*TrainingArguments._VALID_DICT_FIELDS, "model_init_kwargs"]

    learning_rate: float = field(default=1e-6, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(
        default=10,
        metadata={"help": "Log every X update steps (an integer, or a float in [0, 1) for a ratio of all steps)."},
    )
    gradient_checkpointing: bool | None = field(
        default=True,
        metadata={"help": "Trade compute for memory: recompute activations in the backward pass."},
    )
    gradient_checkpointing_policy: str | None = field(
        default=None,
        metadata={"help": "What a checkpointed layer keeps: selective (its matmul and attention outputs; only the "
                  "element-wise ops are recomputed), mlp (only the MLP is checkpointed, selectively) or full (nothing: "
                  "the whole layer runs again; the least memory). Default: mlp, or full where "
                  "gradient_checkpointing_kwargs ask for use_reentrant or their own context_fn. No effect without "
                  "gradient_checkpointing.", "choices": list(POLICIES)},
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. Default: on only where the hardware has native bf16 (never on CPU)."},
    )

    max_length: int | None = field(
        default=1024, metadata={"help": "Maximum tokens of prompt + completion per sequence; None for no limit."}
    )
    max_completion_length: int | None = field(default=None, metadata={"help": "Maximum tokens of each completion."})
    beta: float = _loss_field("beta")
    label_smoothing: float = _loss_field("label_smoothing")
    loss_type: str = _loss_field("loss_type", choices=list(_CONFIG_LOSS_TYPES))
    disable_dropout: bool = field(default=True, metadata={"help": "Whether to disable dropout in the model."})
    cpo_alpha: float = _loss_field("cpo_alpha")
    simpo_gamma: float = _loss_field("simpo_gamma")
    alpha: float = _loss_field("alpha")
    arpo: bool = _loss_field("arpo")
    arpo_c1: float = _loss_field("arpo_c1")
    arpo_c2: float = _loss_field("arpo_c2")
    generate_during_eval: bool = field(
        default=False, metadata={"help": "Generate and log completions for a few eval prompts at each evaluation."}
    )
    is_encoder_decoder: bool | None = field(default=None, metadata={"help": "Whether the model is encoder-decoder."})
    model_init_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "Keyword arguments of from_pretrained when the model is given as a string."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow models that ship custom code."})
    dataset_num_proc: int | None = field(default=None, metadata={"help": "Processes used to tokenize the dataset."})

    chunked_logits: bool = field(
        default=True, metadata={"help": "Compute log-probs chunk by chunk from hidden states (no (B, T, V) logits)."}
    )
    logits_chunk_size: int | None = field(
        default=None, metadata={"help": "Positions per logits chunk; default: about 32 MiB of fp32 logits, at least 256 positions."}
    )
    padding_free: bool | None = field(
        default=None, metadata={"help": "Pack sequences into rows without padding. Default: on where a probe batch "
                                "verifies that the packed log-probs equal the padded ones."}
    )
    prefix_sharing: bool | None = field(
        default=None, metadata={"help": "Compute each prompt once per pair (prompt + chosen + rejected in one row). "
                                "Default: on where a probe batch verifies that the log-probs are unchanged."}
    )
    max_tokens_per_batch: int | None = field(
        default=None, metadata={"help": "Micro-batches by a token budget instead of a fixed number of pairs."}
    )
    on_nonfinite: str = field(
        default="raise",
        metadata={"help": "NaN/inf loss or gradient norm: raise (naming the step and rows) or skip the step.",
                  "choices": ["raise", "skip"]},
    )
    prompt_overflow: str = field(
        default="keep_end",
        metadata={"help": "A prompt that alone fills max_length: keep its end, or drop the row.",
                  "choices": ["keep_end", "drop"]},
    )
    tokenize_jointly: bool = field(
        default=False, metadata={"help": "Tokenize prompt + answer as one string, as TRL does (tokens may merge "
                                 "across the boundary); default: apart, as generation sees the prompt."})
    invalid_rows: str = field(
        default="raise",
        metadata={"help": "Malformed rows: raise a ValueError naming the row, or skip and count them.",
                  "choices": ["raise", "skip"]},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete the previous run's checkpoints, model and files in output_dir before "
                                 "training. Without it, an output_dir that holds another run is refused."})
    resume_anyway: bool = field(
        default=False, metadata={"help": "Resume from a checkpoint whose loss settings, max_length or data differ from "
                                 "this run's, logging the differences (without it such a resume is refused)."})

    def __post_init__(self):
        self._validate_cpo_fields()
        if self.loss_type == "alphapo":
            logger.warning("loss_type='alphapo' is SimPO with cpo_alpha=0: setting loss_type='simpo', cpo_alpha=0.0.")
            self.loss_type, self.cpo_alpha = "simpo", 0.0
        elif self.loss_type == "simpo" and self.cpo_alpha > 0:
            logger.info(
                f"loss_type='simpo' with cpo_alpha={self.cpo_alpha} is CPO-SimPO (SimPO plus the NLL regulariser); "
                "set cpo_alpha=0 for plain SimPO."
            )
        if summed_alphapo_note(self.loss_type, self.alpha):
            logger.warning(summed_alphapo_note(self.loss_type, self.alpha))
        if self.loss_type in ("hinge", "ipo") and self.label_smoothing > 0:
            logger.warning(f"label_smoothing={self.label_smoothing} has no effect on the {self.loss_type} loss.")
        if not self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not accelerator_available():
            # transformers runs several CPU processes as one gloo group only with use_cpu; else each trains alone
            logger.info("Several processes and no GPU: use_cpu=True, so they train together (DDP over gloo).")
            self.use_cpu = True
        if self.bf16 is None:
            self.bf16 = not self.fp16 and not self.use_cpu and bf16_supported()
        # TRL's name is the primary one here: resolve it before transformers sees it, without its deprecation warning.
        if self.activation_checkpointing is None:
            self.activation_checkpointing = self.gradient_checkpointing
        super().__post_init__()
        self._validate_checkpointing()  # after TrainingArguments parsed the kwargs (a JSON string on the command line)

    def _fail(self, name: str, problem: str, fix: str) -> None:
        raise ValueError(f"CPOConfig.{name}={getattr(self, name)!r} {problem}." + (f" {fix}" if fix else ""))

    def _validate_cpo_fields(self) -> None:
        fail = self._fail
        if self.loss_type not in _CONFIG_LOSS_TYPES:
            fail("loss_type", "is not a known loss", f"Use one of: {', '.join(_CONFIG_LOSS_TYPES)}.")
        for name in ("beta", "label_smoothing", "cpo_alpha", "simpo_gamma", "alpha", "arpo_c1", "arpo_c2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                fail(name, "is not a finite number", "Give a finite float.")
        if self.beta <= 0:
            fail("beta", "must be > 0 (it divides the SimPO margin and the IPO target)", "Use e.g. beta=0.1.")
        if not 0.0 <= self.label_smoothing < 0.5:
            fail("label_smoothing", "is outside [0, 0.5)", "Use 0 for none; 0.5 would make the loss ignore labels.")
        if self.cpo_alpha < 0:
            fail("cpo_alpha", "is negative (it would reward a high NLL of the chosen answer)", "Use a value >= 0.")
        if self.simpo_gamma < 0:
            fail("simpo_gamma", "is negative", "SimPO's margin is >= 0; use e.g. 0.5.")
        if self.arpo_c1 <= 0 or self.arpo_c2 < 0:
            fail("arpo_c1" if self.arpo_c1 <= 0 else "arpo_c2", "is out of range (c1 > 0, c2 >= 0)",
                 "Use the X-ALMA defaults, arpo_c1=0.9 and arpo_c2=0.4.")
        if self.arpo and self.loss_type == "sft":
            fail("arpo", "has no effect with loss_type='sft' (no preference term)", "Pick a preference loss_type.")
        for name in ("max_length", "max_completion_length", "logits_chunk_size", "dataset_num_proc",
                     "max_tokens_per_batch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                fail(name, "must be a positive integer or None", "Give an int >= 1.")
        if self.max_length is not None and self.max_length < 2:
            fail("max_length", "leaves no room for a prompt token and a completion token", "Use max_length >= 2.")
        if self.prompt_overflow not in ("keep_end", "drop"):
            fail("prompt_overflow", "is not a known policy", "Use 'keep_end' or 'drop'.")
        if self.on_nonfinite not in ("raise", "skip"):
            fail("on_nonfinite", "is not a known policy", "Use 'raise' or 'skip'.")
        if self.invalid_rows not in ("raise", "skip"):
            fail("invalid_rows", "is not a known policy", "Use 'raise' or 'skip'.")
        self._validate_trainer_numbers(fail)

    def _validate_checkpointing(self) -> None:
        policy, fail = self.gradient_checkpointing_policy, self._fail
        if policy is not None and policy not in POLICIES:
            fail("gradient_checkpointing_policy", "is not a known policy", f"Use one of: {', '.join(POLICIES)}.")
        if policy not in (None, "full") and (self.activation_checkpointing_kwargs or {}).get("use_reentrant"):
            fail("gradient_checkpointing_policy", "needs the non-reentrant checkpoint, but gradient_checkpointing_"
                 "kwargs set use_reentrant=True", "Drop use_reentrant, or use gradient_checkpointing_policy='full'.")

    def _validate_trainer_numbers(self, fail) -> None:
        """Refuse, before a model loads, the training numbers that would fail later or train nothing."""
        for f in fields(self):
            value = getattr(self, f.name, None)
            if isinstance(value, float) and not math.isfinite(value):
                fail(f.name, "is not a finite number", "Give a finite value.")
        for name, (allowed, ok) in _TRAINER_NUMBERS.items():
            value = getattr(self, name, None)
            if value is not None and not ok(value):
                fail(name, f"is out of range (allowed: {allowed})", "")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            fail("num_train_epochs", "must be > 0 when max_steps is not set (it would train nothing)",
                 "Give num_train_epochs > 0, or max_steps > 0.")
