"""CPOTrainer behaviour beyond TRL parity: exact gradient accumulation, chunked = naive, edge cases, evaluation."""

import copy
import logging
import math
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset, IterableDataset
from helpers import tiny_qwen2, train_args, train_logs, zen

from cpo import CPOTrainer
from cpo.rows import RowError

METRICS = ["loss", "nll_loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
           "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected"]


def one_step(tmp_path, tok, model, dataset, **config):
    args = train_args(tmp_path, max_steps=1, optim="sgd", learning_rate=0.5, **config)
    trainer = CPOTrainer(model=model, args=args, processing_class=copy.deepcopy(tok), train_dataset=dataset)
    logs = train_logs(trainer)
    return logs[0], {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "simpo", "hinge"])
def test_gradient_accumulation_is_exact(tmp_path, tok, loss_type):
    """One step of 8 pairs == 4 accumulated micro-batches of 2 pairs: same loss, metrics and updated weights
    (SGD, so the update is the gradient itself). TRL averages per-micro-batch means instead."""
    base, data = tiny_qwen2(len(tok)), zen("standard_preference")
    big = one_step(tmp_path / "big", tok, copy.deepcopy(base), data, per_device_train_batch_size=8, loss_type=loss_type)
    small = one_step(tmp_path / "small", tok, copy.deepcopy(base), data, per_device_train_batch_size=2,
                     gradient_accumulation_steps=4, loss_type=loss_type)
    for key in METRICS + ["grad_norm"]:
        assert small[0][key] == pytest.approx(big[0][key], rel=1e-5, abs=1e-6), key
    for name, weight in big[1].items():
        torch.testing.assert_close(small[1][name], weight, rtol=1e-5, atol=1e-6)
    moved = sum((big[1][n] - p).abs().sum() for n, p in base.named_parameters())
    assert moved > 1e-3  # the step really changed the weights


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "simpo", "sft"])
def test_chunked_and_naive_routes_train_identically(tmp_path, tok, loss_type):
    base, data, logs = tiny_qwen2(len(tok)), zen("standard_preference"), {}
    for chunked in (True, False):
        args = train_args(tmp_path / str(chunked), chunked_logits=chunked, logits_chunk_size=7, loss_type=loss_type)
        trainer = CPOTrainer(model=copy.deepcopy(base), args=args, processing_class=copy.deepcopy(tok), train_dataset=data)
        assert (trainer.routes.head is not None) == chunked
        logs[chunked] = train_logs(trainer)
    for a, b in zip(logs[True], logs[False]):
        for key in METRICS + ["grad_norm"]:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key


def long_rows(n=6, prompt_words=4, answer_words=40):
    return Dataset.from_list([
        {"prompt": " ".join(f"p{i}w{j}" for j in range(prompt_words)),
         "chosen": " " + " ".join(f"good{i}x{j}" for j in range(answer_words)),
         "rejected": " " + " ".join(f"bad{i}y{j}" for j in range(answer_words))}
        for i in range(n)
    ])


def assert_finite(logs):
    for entry in logs:
        for key in METRICS + ["grad_norm"]:
            assert math.isfinite(entry[key]), (key, entry[key])


def test_over_long_completions_and_prompts_give_finite_losses(tmp_path, tok):
    model = tiny_qwen2(len(tok))
    # completions far over max_length are cut; prompts longer than max_length keep their end
    for i, (pw, aw) in enumerate([(4, 200), (60, 5), (40, 40)]):
        args = train_args(tmp_path / str(i), max_length=32, per_device_train_batch_size=3)
        trainer = CPOTrainer(model=copy.deepcopy(model), args=args, processing_class=copy.deepcopy(tok),
                             train_dataset=long_rows(prompt_words=pw, answer_words=aw))
        assert_finite(train_logs(trainer))


def test_alphapo_with_summed_logps_beyond_minus_300_is_finite_where_trl_is_nan(tmp_path, tok):
    from trl.experimental.cpo import CPOConfig as TRLConfig
    from trl.experimental.cpo import CPOTrainer as TRLTrainer

    model, data = tiny_qwen2(len(tok)), long_rows(answer_words=20)
    args = train_args(tmp_path / "ours", alpha=0.25, per_device_train_batch_size=3)
    ours = train_logs(CPOTrainer(model=copy.deepcopy(model), args=args, processing_class=copy.deepcopy(tok),
                                 train_dataset=data))
    assert ours[0]["logps/chosen"] < -300  # random weights: about -10.8 nats a token
    assert_finite(ours)
    ref_tok = copy.deepcopy(tok)
    ref_tok.pad_token = ref_tok.eos_token
    trl_args = TRLConfig(output_dir=str(tmp_path / "trl"), alpha=0.25, per_device_train_batch_size=3, max_steps=1,
                         logging_steps=1, report_to="none", bf16=False, save_strategy="no", disable_tqdm=True)
    trl = train_logs(TRLTrainer(model=copy.deepcopy(model), args=trl_args, processing_class=ref_tok, train_dataset=data))
    assert not math.isfinite(trl[0]["grad_norm"])  # exp(logp) underflows, 0 ** -alpha = inf


def test_alphapo_on_summed_logps_keeps_the_gradient_norm_finite(tmp_path, tok):
    """The issue's case in small: the rejected answers' summed log-probs near -270 (AlphaPO's slope p^-0.25 near
    e^67) and longer chosen answers below them. Capping the reward's value alone left the gradient norm inf (so did
    cpo 0.1.0: NonFiniteError at step 1); the reward's linear continuation past slope 1e6 keeps it finite."""
    data = Dataset.from_list([
        {"prompt": f"p{i}", "chosen": " " + " ".join(f"good{i}x{j}" for j in range(36)),
         "rejected": " " + " ".join(f"bad{i}y{j}" for j in range(6))} for i in range(4)])
    args = train_args(tmp_path, alpha=0.25, max_steps=2, per_device_train_batch_size=4)
    logs = train_logs(CPOTrainer(model=tiny_qwen2(len(tok)), args=args, processing_class=tok, train_dataset=data))
    assert -320 < logs[0]["logps/rejected"] < -150 and logs[0]["logps/chosen"] < logs[0]["logps/rejected"]
    assert_finite(logs)


def test_empty_completion_is_a_row_error(tmp_path, tok):
    data = Dataset.from_list([{"prompt": "Q", "chosen": " a", "rejected": " b"}, {"prompt": "Q", "chosen": " a", "rejected": ""}])
    with pytest.raises(RowError, match="Row 1, field 'rejected': is empty"):
        CPOTrainer(model=tiny_qwen2(len(tok)), args=train_args(tmp_path), processing_class=tok, train_dataset=data)


def test_logits_metrics_average_completion_tokens_only(tmp_path, tok):
    """eval_logits/chosen = mean over chosen completion tokens of the vocab-mean logit at the position that predicts
    them (TRL averages over every position of the padded batch instead)."""
    model, data = tiny_qwen2(len(tok)), zen("standard_preference", "test")
    args = train_args(tmp_path, per_device_eval_batch_size=8)
    trainer = CPOTrainer(model=copy.deepcopy(model), args=args, processing_class=tok, eval_dataset=data)
    metrics = trainer.evaluate()
    rows = trainer.eval_dataset
    for side in ("chosen", "rejected"):
        total, count = 0.0, 0
        for row in rows:
            ids = row["prompt_input_ids"] + row[f"{side}_input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0]
            p = len(row["prompt_input_ids"])
            total += logits[p - 1 : len(ids) - 1].mean(-1).sum().item()
            count += len(ids) - p
        assert metrics[f"eval_logits/{side}"] == pytest.approx(total / count, rel=1e-5)


def test_eval_dataset_dict_gets_one_prefix_per_set(tmp_path, tok):
    data = {"zen": zen("standard_preference", "test"), "implicit": zen("standard_implicit_prompt_preference", "test")}
    trainer = CPOTrainer(model=tiny_qwen2(len(tok)), args=train_args(tmp_path), processing_class=tok,
                         train_dataset=zen("standard_preference"), eval_dataset=data)
    metrics = trainer.evaluate()
    for name in data:
        assert 0.0 <= metrics[f"eval_{name}_rewards/accuracies"] <= 1.0
        assert metrics[f"eval_{name}_nll_loss"] > 0


def test_iterable_dataset_and_missing_pad_token(tmp_path, tok, caplog):
    rows = list(zen("standard_preference"))
    stream = IterableDataset.from_generator(lambda: iter(rows))
    assert tok.pad_token is None
    with caplog.at_level(logging.INFO, logger="cpo"):
        trainer = CPOTrainer(model=tiny_qwen2(len(tok)), args=train_args(tmp_path, max_steps=2), processing_class=tok,
                             train_dataset=stream)
    assert tok.pad_token == tok.eos_token and "no pad token: using eos_token" in caplog.text
    assert len(train_logs(trainer)) == 2


def test_model_from_a_local_path_with_init_kwargs(tmp_path, tok):
    tiny_qwen2(len(tok)).save_pretrained(tmp_path / "model")
    args = train_args(tmp_path / "run", max_steps=1, model_init_kwargs={"dtype": "float32"})
    trainer = CPOTrainer(model=str(tmp_path / "model"), args=args, processing_class=tok,
                         train_dataset=zen("standard_preference"))
    assert next(trainer.model.parameters()).dtype == torch.float32
    assert_finite(train_logs(trainer))
    with pytest.raises(ValueError, match="model_init_kwargs only applies"):
        CPOTrainer(model=tiny_qwen2(len(tok)), args=args, processing_class=tok, train_dataset=zen("standard_preference"))


def test_generate_during_eval_writes_greedy_completions(tmp_path, tok):
    import json

    model = tiny_qwen2(len(tok))
    # one prompt per evaluation: no padding, so greedy decoding is bit-comparable with a direct generate()
    args = train_args(tmp_path, generate_during_eval=True, max_completion_length=5, per_device_eval_batch_size=1)
    trainer = CPOTrainer(model=model, args=args, processing_class=tok, eval_dataset=zen("standard_preference"))
    trainer.evaluate()
    trainer.evaluate()
    records = [json.loads(line) for line in (tmp_path / "eval_generations.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[0]["prompt"] == records[1]["prompt"]  # the same prompt each time
    row = next(r for r in trainer.eval_dataset if tok.decode(r["prompt_input_ids"]) == records[0]["prompt"])
    with torch.no_grad():
        ids = torch.tensor([row["prompt_input_ids"]])  # BOS == pad for GPT-2: give the mask explicitly
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    assert records[0]["completion"] == tok.decode(out[0, len(row["prompt_input_ids"]):], skip_special_tokens=True)


@pytest.mark.parametrize("stage", [2, 3])
def test_zero3_falls_back_to_full_logits(tmp_path, tok, caplog, monkeypatch, stage):
    """ZeRO-3 gathers the head only inside its own forward, where the chunked path cannot read it; ZeRO-2 keeps it."""
    trainer = CPOTrainer(model=tiny_qwen2(len(tok)), args=train_args(tmp_path), processing_class=tok,
                         train_dataset=zen("standard_preference"))
    assert trainer.routes.head is not None
    trainer.is_deepspeed_enabled = True
    plugin = SimpleNamespace(zero_stage=stage)
    monkeypatch.setattr(trainer, "accelerator", SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)))
    with caplog.at_level(logging.WARNING, logger="cpo"):
        trainer._check_distribution()
    assert (trainer.routes.head is None) == (stage == 3)
    assert ("because DeepSpeed ZeRO-3 shards the LM head" in caplog.text) == (stage == 3)
