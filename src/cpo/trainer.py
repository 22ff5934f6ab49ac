"""CPOTrainer: ``transformers.Trainer`` wired to the CPO losses, layouts and compute routes. No maths here."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .batching import TokenBudgetBatchSampler, pair_tokens
from .card import dataset_names, write_card
from .checkpointing import CheckpointingPolicy
from .config import CPOConfig
from .distributed import check_sharding_request, enable_fsdp_on_cpu, head_sharding, warn_dropped_sharding
from .generation import log_eval_generations
from .guard import NonFiniteGuard
from .layouts import EncoderDecoderCollator
from .loading import load_model, load_tokenizer, text_config
from .logprobs import sequence_logps
from .loss_settings import LossSettings
from .losses import cpo_objective, summed_alphapo_note
from .metrics import MetricSums
from .modeling import disable_dropout, forward_logps
from .routes import select_routes, without_chunked_logps
from .runs import begin_run, run_settings, save_run_settings
from .tokenization import DEFAULT_COMPLETION_LENGTH, TokenizeSpec, prepare_dataset

logger = logging.getLogger("cpo")


def side_logit_sums(token_logit_means: torch.Tensor, target_seq: torch.Tensor, num_pairs: int) -> torch.Tensor:
    """``(N,), (N,) -> (2,)``: the sums of the per-token logit means over the chosen and the rejected completions."""
    is_chosen = target_seq < num_pairs
    return torch.stack([token_logit_means[is_chosen].sum(), token_logit_means[~is_chosen].sum()])


class CPOTrainer(Trainer):
    """Contrastive Preference Optimization (arXiv 2401.08417) and its family on ``transformers.Trainer``.

    Same constructor as TRL 1.16's ``trl.experimental.cpo.CPOTrainer``. ``model`` may be a model, a hub name, a local
    folder or a ``.gguf`` file; ``peft_config`` wraps it in a PEFT model. Datasets hold ``chosen`` and ``rejected``
    (and optionally ``prompt``) as strings or as conversations; they are tokenized here.

    The loss of a step is normalised by the pairs and chosen-completion tokens of the whole optimiser step, over all
    micro-batches and processes, so gradient accumulation and data parallelism do not change it. ``routes`` holds
    the compute routes verified for the model (:class:`cpo.routes.Routes`).
    """

    # Our loss is already this micro-batch's share of the whole step: Trainer must not divide it again.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model: nn.Module | str | None = None,
        args: CPOConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        model_init=None,
        callbacks=None,
        optimizers=(None, None),
        preprocess_logits_for_metrics=None,
        peft_config=None,
        compute_metrics=None,
    ):
        args = args if args is not None else CPOConfig(output_dir="cpo_output")
        if not isinstance(args, CPOConfig):
            raise TypeError(f"args must be a cpo.CPOConfig, got {type(args).__name__}; build one with CPOConfig(...).")
        if train_dataset is None and eval_dataset is None:
            raise ValueError(
                "Give a `train_dataset` (or, to evaluate only, an `eval_dataset`) of 'chosen' / 'rejected' "
                "(and optionally 'prompt') rows."
            )
        model_name = model
        self._card_datasets = dataset_names(train_dataset)  # before tokenization replaces the datasets
        model = self._init_model(model, args, peft_config, model_init)
        self.is_encoder_decoder = bool(
            getattr(text_config(model), "is_encoder_decoder", False) if model is not None else args.is_encoder_decoder
        )
        if processing_class is None:
            processing_class = load_tokenizer(model_name if isinstance(model_name, str) else
                                              model.config._name_or_path, args.trust_remote_code,
                                              (args.model_init_kwargs or {}).get("revision"))
        self._init_special_tokens(model, processing_class)
        if args.disable_dropout:
            disable_dropout(model)

        spec = TokenizeSpec.from_config(args, self.is_encoder_decoder)
        with args.main_process_first(desc="tokenizing the datasets"):
            if train_dataset is not None:
                train_dataset = prepare_dataset(train_dataset, processing_class, spec, args.dataset_num_proc, "train")
            if eval_dataset is not None:
                eval_dataset = self._prepare_eval(eval_dataset, processing_class, spec, args.dataset_num_proc)
        cfg = text_config(model)
        self.aux_loss_enabled = bool(getattr(cfg, "output_router_logits", False))
        self.aux_loss_coef = float(getattr(cfg, "router_aux_loss_coef", 0.0) or 0.0)
        self.routes = select_routes(model, args, processing_class.pad_token_id, self.is_encoder_decoder,
                                    self.aux_loss_enabled, layout=data_collator is None)
        if data_collator is None:
            data_collator = self.routes.collator or self._encoder_decoder_collator(model, processing_class)

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            model_init=model_init,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        )
        self.add_callback(CheckpointingPolicy())  # how checkpointed layers recompute, once train() enabled them
        self._metrics = MetricSums()
        self._eval_prefix = "eval_"
        self._guard = NonFiniteGuard(args.on_nonfinite, self.accelerator,
                                     summed_alphapo_note(args.loss_type, args.alpha))
        self._check_distribution()

    # ----------------------------------------------------------------------------------------------- setup

    @staticmethod
    def _init_model(model, args: CPOConfig, peft_config, model_init):
        if isinstance(model, str):
            model = load_model(model, args.model_init_kwargs, args.trust_remote_code)
        elif args.model_init_kwargs:
            raise ValueError("model_init_kwargs only applies when `model` is a name or path, but a model was given.")
        if model is None and model_init is None:
            raise ValueError("Give a `model` (a model, a hub name or a local path) or a `model_init`.")
        if peft_config is not None:
            from peft import PeftModel, get_peft_model
            from transformers import set_seed

            set_seed(args.seed)  # adapters are initialised randomly: make that reproducible

            if isinstance(model, PeftModel):
                raise ValueError(
                    "You passed a PeftModel and a peft_config: merge and unload the existing adapter first, or pass "
                    "the PeftModel without a peft_config to train its adapter."
                )
            if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
                from peft import prepare_model_for_kbit_training

                # as TRL: norms in fp32, input gradients on, checkpointing as configured (QLoRA)
                model = prepare_model_for_kbit_training(
                    model, use_gradient_checkpointing=args.gradient_checkpointing,
                    gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs)
            model = get_peft_model(model, peft_config)
        if args.gradient_checkpointing and hasattr(model, "peft_config"):
            model.enable_input_require_grads()  # frozen embeddings must still pass gradients to checkpointed layers
        return model

    def _init_special_tokens(self, model, tokenizer) -> None:
        if getattr(tokenizer, "eos_token_id", None) is None:
            raise ValueError("The tokenizer has no eos_token: set tokenizer.eos_token (completions must end).")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
            logger.info(f"The tokenizer has no pad token: using eos_token {tokenizer.eos_token!r} as pad.")
        if model is not None:
            text_config(model).pad_token_id = tokenizer.pad_token_id
            if getattr(model, "generation_config", None) is not None:
                model.generation_config.pad_token_id = tokenizer.pad_token_id

    @staticmethod
    def _prepare_eval(eval_dataset, tokenizer, spec, num_proc):
        if isinstance(eval_dataset, dict):
            return {
                name: prepare_dataset(ds, tokenizer, spec, num_proc, f"eval_{name}") for name, ds in eval_dataset.items()
            }
        return prepare_dataset(eval_dataset, tokenizer, spec, num_proc, "eval")

    @staticmethod
    def _encoder_decoder_collator(model, tokenizer):
        start = getattr(text_config(model), "decoder_start_token_id", None)
        if start is None:
            raise ValueError("The encoder-decoder model has no config.decoder_start_token_id; set it (T5: pad).")
        return EncoderDecoderCollator(tokenizer.pad_token_id, start)

    def get_train_dataloader(self):
        """Trainer's loader, or one over token-budget batches when ``max_tokens_per_batch`` is set."""
        world, ga = self.accelerator.num_processes, self.args.gradient_accumulation_steps
        if self.args.max_tokens_per_batch is None:
            pairs = self.args.per_device_train_batch_size * ga * world
            logger.info(f"An optimiser step takes {pairs} pairs ({self.args.per_device_train_batch_size} per device "
                        f"x {ga} accumulation steps x {world} processes).")
            return super().get_train_dataloader()
        if not hasattr(self.train_dataset, "__len__"):
            raise ValueError("max_tokens_per_batch needs a map-style dataset (a streamed one has no lengths).")
        shared = bool(getattr(self.data_collator, "shared_prompt", False))
        columns = [self.train_dataset[c] for c in ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids")]
        lengths = [pair_tokens(len(p), len(c), len(r), shared) for p, c, r in zip(*columns)]
        sampler = TokenBudgetBatchSampler(lengths, self.args.max_tokens_per_batch,
                                          self.args.per_device_train_batch_size, self.args.seed)
        sizes = [len(b) for b in sampler.batches]
        logger.info(
            f"Token-budget batches: {len(sizes)} micro-batches of at most {self.args.max_tokens_per_batch} tokens, "
            f"{min(sizes)}-{max(sizes)} pairs each (mean {sum(sizes) / len(sizes):.1f}); an optimiser step takes "
            f"{ga} of them per process x {world} processes, about {ga * world * sum(sizes) / len(sizes):.0f} pairs."
        )
        loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                            num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory)
        return self.accelerator.prepare(loader)

    def create_accelerator_and_postprocess(self) -> None:
        check_sharding_request(self.args)
        super().create_accelerator_and_postprocess()
        if enable_fsdp_on_cpu(self.accelerator, self.args):
            self.is_fsdp_enabled = True

    def _check_distribution(self) -> None:
        """Say when a requested FSDP/DeepSpeed run is not one, and use the model's own head where ZeRO-3 shards it
        outside the forward pass (chunked log-probs read it)."""
        warn_dropped_sharding(self.accelerator, self.is_fsdp_enabled, self.is_deepspeed_enabled)
        sharding = head_sharding(self.accelerator, self.is_deepspeed_enabled)
        if sharding is not None:
            self.routes = without_chunked_logps(self.routes, f"{sharding} shards the LM head outside the forward "
                                                "pass; the model computes full logits")

    def _remove_unused_columns(self, dataset, description: str | None = None):
        return dataset  # our datasets hold exactly the tokenized columns the collator needs

    def _get_collator_with_removed_columns(self, data_collator, description: str | None = None):
        return data_collator  # the same for streamed datasets

    # ------------------------------------------------------------------------------------------- the step

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor:
        """Pairs and chosen-completion tokens of the whole optimiser step, summed over processes: the loss
        normalisers that make gradient accumulation and data parallelism exact."""
        pairs = sum(b["row_index"].shape[0] for b in batch_samples)
        tokens = sum(int((b["target_seq"] < b["row_index"].shape[0]).sum()) for b in batch_samples)
        counts = torch.tensor([pairs, tokens], dtype=torch.float64, device=device)
        if self.args.max_tokens_per_batch is not None:
            # each process adds its own pairs; counts of 1 / world make the reduced ratio the global pairs per step
            world = self.accelerator.num_processes
            self._metrics.add("train", "pairs_per_step", counts[0], 1.0 / world)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        return counts

    def _pair_loss(self, model, inputs: dict[str, torch.Tensor], step_counts: torch.Tensor | None, split: str):
        """Forward pass, CPO loss and metric sums for one micro-batch."""
        out = forward_logps(
            model,
            inputs,
            attn_impl=self.routes.attn_impl,
            dtype=next(self.model.parameters()).dtype,
            capture=self.routes.capture,
            head=self.routes.head,
            chunk_size=self.args.logits_chunk_size,
            router_logits=self.aux_loss_enabled,
        )
        b = inputs["row_index"].shape[0]
        sums, counts = sequence_logps(out.token_logps, inputs["target_seq"], 2 * b)
        if step_counts is None:  # evaluation, or a caller outside Trainer's loop: this micro-batch alone
            num_pairs, num_tokens, scale = float(b), float(counts[:b].sum()), 1.0
        else:
            num_pairs, num_tokens = step_counts.tolist()
            scale = float(self.accelerator.num_processes)  # DDP/FSDP/DeepSpeed average gradients over processes
        objective = cpo_objective(sums, counts, num_pairs=num_pairs, num_chosen_tokens=num_tokens,
                                  settings=LossSettings.of(self.args))
        loss = objective.loss
        if self.aux_loss_enabled and out.aux_loss is not None:
            loss = loss + self.aux_loss_coef * out.aux_loss * (b / num_pairs)
            self._metrics.add(split, "aux_loss", out.aux_loss, 1)
        side_counts = torch.stack([counts[:b].sum(), counts[b:].sum()])
        logit_sums = side_logit_sums(out.token_logit_means, inputs["target_seq"], b)
        self._record_metrics(split, objective, sums, side_counts, logit_sums)
        return loss * scale, logit_sums / side_counts.clamp(min=1)

    def _record_metrics(self, split, objective, sums, side_counts, logit_sums) -> None:
        """Add TRL's metrics of one micro-batch, and the objective's own (``arpo/gamma``), to the running sums
        (reduced and logged at log time). ``sums`` is ``(2B,)`` (chosen then rejected), ``side_counts`` and
        ``logit_sums`` ``(2,)`` (chosen, rejected completion tokens)."""
        chosen_r, rejected_r = objective.chosen_rewards, objective.rejected_rewards
        b = chosen_r.shape[0]
        add = self._metrics.add
        add(split, "rewards/chosen", chosen_r.sum(), b)
        add(split, "rewards/rejected", rejected_r.sum(), b)
        add(split, "rewards/accuracies", (chosen_r > rejected_r).sum(), b)
        add(split, "rewards/margins", (chosen_r - rejected_r).sum(), b)
        add(split, "logps/chosen", objective.chosen_logps.sum(), b)
        add(split, "logps/rejected", objective.rejected_logps.sum(), b)
        add(split, "logits/chosen", logit_sums[0], side_counts[0])
        add(split, "logits/rejected", logit_sums[1], side_counts[1])
        add(split, "nll_loss", -sums[:b].sum(), side_counts[0])
        for name, values in objective.metrics.items():
            add(split, name, values.sum(), b)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, _ = self._pair_loss(model, inputs, num_items_in_batch, "train")
        self._guard.observe(loss, inputs["row_index"])
        if num_items_in_batch is None and model.training:
            loss = loss / self.args.gradient_accumulation_steps  # no step totals: fall back to per-batch means
        return (loss, {}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only: bool, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, logit_means = self._pair_loss(model, inputs, None, "eval")
        if prediction_loss_only:
            return loss.detach(), None, None
        # As TRL: the "predictions" are this batch's mean chosen and rejected logits, for compute_metrics.
        return loss.detach(), logit_means, torch.zeros_like(logit_means)

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm)
        self._guard.check(model, grad_norm, self.state.global_step + 1)
        return grad_norm

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model``, then the model card (``README.md``, see :func:`create_model_card`)."""
        super().save_model(output_dir, _internal_call)
        if self.is_world_process_zero():
            self.create_model_card(output_dir=output_dir)

    def create_model_card(self, model_name: str | None = None, dataset_name: str | list[str] | None = None,
                          output_dir: str | None = None, **kwargs) -> None:
        """Write ``README.md`` in ``output_dir`` (default ``args.output_dir``): the loss and its settings, the base
        model, the data, the final metrics, the versions and the papers to cite (:func:`cpo.card.write_card`)."""
        model = self.accelerator.unwrap_model(self.model)
        base = getattr(getattr(model, "config", None), "_name_or_path", None) or None
        datasets = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name or self._card_datasets)
        write_card(output_dir or self.args.output_dir, self.args, model_name=model_name, base_model=base,
                   datasets=datasets, log_history=self.state.log_history)

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint, with this run's settings for the resume check (:mod:`cpo.runs`)."""
        self._guard.check_weights(self.model, f"checkpoint {self.state.global_step}")
        super()._save_checkpoint(model, trial)
        if self.is_world_process_zero():
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            save_run_settings(folder, run_settings(self.args, self._card_datasets))

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None,
              **kwargs):
        """``Trainer.train``, one run per ``output_dir`` (:func:`cpo.runs.begin_run`). ``resume_from_checkpoint`` is
        a path, or True / "true" for the latest checkpoint of ``output_dir``."""
        checkpoint = begin_run(self.args, resume_from_checkpoint, self._card_datasets, self.is_world_process_zero())
        self.accelerator.wait_for_everyone()  # the main process may have cleared output_dir
        return super().train(resume_from_checkpoint=str(checkpoint) if checkpoint else None, trial=trial,
                             ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)

    # ------------------------------------------------------------------------------------------- logging

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix: str = "eval"):
        self._eval_prefix = f"{metric_key_prefix}_"
        if self.args.generate_during_eval and not self.is_encoder_decoder:
            self._generate_samples(dataloader.dataset)
        return super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)

    def _generate_samples(self, dataset) -> None:
        """The same few evaluation prompts (seeded) at every evaluation, completed greedily; see generation.py."""
        if not hasattr(dataset, "__len__"):
            return
        k = min(self.args.eval_batch_size, len(dataset))
        rows = [dataset[i] for i in sorted(random.Random(self.args.seed).sample(range(len(dataset)), k))]
        log_eval_generations(
            self.accelerator.unwrap_model(self.model), self.processing_class, rows, step=self.state.global_step,
            out_dir=self.args.output_dir, report_to=self.args.report_to or [],
            max_new_tokens=self.args.max_completion_length or DEFAULT_COMPLETION_LENGTH, write=self.is_world_process_zero(),
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the CPO metrics gathered since the last log, reduced over processes in a single collective."""
        reduce = self._reduce_sum if self.accelerator.num_processes > 1 else None
        if "loss" in logs:
            logs.update(self._metrics.pop("train", reduce))
            if self.args.on_nonfinite == "skip":
                logs["nonfinite_skipped_steps"] = self._guard.skipped
        elif any(k.startswith(self._eval_prefix) for k in logs) and self._metrics.has("eval"):
            logs.update(self._metrics.pop("eval", reduce, prefix=self._eval_prefix))
        super().log(logs, start_time)

    def _reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(t, reduction="sum")

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """``6 * parameters * real tokens`` (padding excluded)."""
        if "attention_mask" in inputs and inputs["attention_mask"].dim() == 2:
            tokens = int(inputs["attention_mask"].sum())
        elif "unit_ids" in inputs:
            tokens = int((inputs["unit_ids"] >= 0).sum())
        else:
            tokens = inputs["input_ids"].numel()
        if not hasattr(self, "_num_params"):
            self._num_params = sum(p.numel() for p in self.model.parameters())
        return 6 * tokens * self._num_params
