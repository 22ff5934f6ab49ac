"""Gradient checkpointing policies: selective and full give the gradients of no checkpointing, selective runs no
matmul twice, and a TRL user's checkpointing settings keep working."""

import copy

import pytest
import torch
from helpers import OpRecorder, tiny_llama, tiny_qwen2, train_args, train_logs, zen
from transformers import TrainerCallback

from cpo import CPOConfig, CPOTrainer
from cpo.checkpointing import DEFAULT_POLICY, resolve_policy

LAYERS = 2  # tiny models' layers
# q, k, v, o, gate and up projections; not down: its output is not needed by the backward, and torch's non-reentrant
# checkpoint stops the recompute once every tensor the backward needs exists again
RECOMPUTED_PER_LAYER = 6
NO_CHECKPOINTING = dict(gradient_checkpointing=False)


class Gradients(TrainerCallback):
    """Every parameter's gradient of the step, as the optimiser is about to apply it."""

    def __init__(self):
        self.grads = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def one_step(tmp_path, tok, model, peft_config=None, **config):
    """One optimiser step of 8 pairs: its logged loss, every gradient, and how often each operator ran."""
    grads = Gradients()
    args = train_args(tmp_path, max_steps=1, per_device_train_batch_size=8, **config)
    trainer = CPOTrainer(model=model, args=args, processing_class=copy.deepcopy(tok), peft_config=peft_config,
                         train_dataset=zen("standard_preference"), callbacks=[grads])
    with OpRecorder() as ops:
        logs = train_logs(trainer)
    return logs[0]["loss"], grads.grads, ops.calls


def matmuls(calls) -> int:
    return calls["mm"] + calls["addmm"] + calls["bmm"]


@pytest.mark.parametrize("arch", [tiny_qwen2, tiny_llama])
def test_policies_give_the_gradients_of_no_checkpointing(tmp_path, tok, arch):
    base = arch(len(tok))
    runs = {name: one_step(tmp_path / name, tok, copy.deepcopy(base), **config) for name, config in {
        "none": dict(NO_CHECKPOINTING, gradient_checkpointing_policy="selective"),  # the policy: no effect
        "full": dict(gradient_checkpointing_policy="full"),
        "selective": dict(gradient_checkpointing_policy="selective"),
        "mlp": dict(gradient_checkpointing_policy="mlp"),
        "default": {},
    }.items()}
    loss, grads, calls = runs["none"]
    assert len(grads) == len(list(base.parameters()))
    for name in ("full", "selective", "mlp", "default"):
        assert runs[name][0] == loss, name
        assert runs[name][1].keys() == grads.keys()
        for param, grad in grads.items():
            torch.testing.assert_close(runs[name][1][param], grad, rtol=1e-6, atol=0, msg=f"{name}: {param}")
    # full recomputes each layer's projections once more; selective recomputes none of them, nor attention
    assert matmuls(runs["full"][2]) == matmuls(calls) + LAYERS * RECOMPUTED_PER_LAYER
    assert matmuls(runs["selective"][2]) == matmuls(runs["default"][2]) == matmuls(calls)
    sdpa = "_scaled_dot_product_flash_attention_for_cpu"
    assert calls[sdpa] > 0 and runs["selective"][2][sdpa] == calls[sdpa] < runs["full"][2][sdpa]
    # what selective does recompute: the element-wise ops (here, RMSNorm's rsqrt and the MLP's SiLU)
    assert calls["rsqrt"] < runs["selective"][2]["rsqrt"] == runs["full"][2]["rsqrt"]
    assert calls["silu"] == LAYERS < runs["selective"][2]["silu"]
    # mlp: only the MLP's element-wise ops run again; no matmul, no norm, no attention
    mlp = runs["mlp"][2]
    assert matmuls(mlp) == matmuls(calls) and mlp[sdpa] == calls[sdpa] and mlp["rsqrt"] == calls["rsqrt"]
    assert mlp["silu"] == 2 * LAYERS
    assert runs["default"][2] == runs[DEFAULT_POLICY][2]


@pytest.mark.parametrize("policy", ["selective", "mlp"])
def test_policies_with_lora_give_the_adapter_gradients_of_full(tmp_path, tok, policy):
    from peft import LoraConfig

    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj"],
                      task_type="CAUSAL_LM")
    base = tiny_qwen2(len(tok))
    full = one_step(tmp_path / "full", tok, copy.deepcopy(base), lora, gradient_checkpointing_policy="full")
    selective = one_step(tmp_path / policy, tok, copy.deepcopy(base), lora, gradient_checkpointing_policy=policy)
    assert selective[0] == full[0] and full[1] and all("lora_" in n for n in full[1])
    for param, grad in full[1].items():
        torch.testing.assert_close(selective[1][param], grad, rtol=1e-6, atol=0, msg=param)
    assert matmuls(selective[2]) < matmuls(full[2])


def test_trl_reentrant_kwargs_keep_working_as_full(tmp_path, tok):
    """A TRL config with ``gradient_checkpointing_kwargs={"use_reentrant": True}`` trains as before: the default
    policy steps back to full checkpointing, whose gradients it gives."""
    base = tiny_qwen2(len(tok))
    reentrant = one_step(tmp_path / "re", tok, copy.deepcopy(base), gradient_checkpointing_kwargs={"use_reentrant": True})
    full = one_step(tmp_path / "full", tok, copy.deepcopy(base), gradient_checkpointing_policy="full")
    # the reentrant checkpoint recomputes whole layers with no early stop: down_proj too
    assert reentrant[0] == full[0] and matmuls(reentrant[2]) == matmuls(full[2]) + LAYERS
    for param, grad in full[1].items():
        torch.testing.assert_close(reentrant[1][param], grad, rtol=1e-6, atol=0, msg=param)


def test_policy_resolution():
    assert resolve_policy(None, None) == DEFAULT_POLICY
    assert resolve_policy(None, {"use_reentrant": False, "every_n_layers": 2}) == DEFAULT_POLICY
    assert resolve_policy(None, {"use_reentrant": True}) == "full"
    assert resolve_policy(None, {"context_fn": object()}) == "full"
    assert resolve_policy("full", None) == "full"


@pytest.mark.parametrize("kwargs,message", [
    (dict(gradient_checkpointing_policy="some"), "gradient_checkpointing_policy='some' is not a known policy. Use "
     "one of: selective, mlp, full"),
    (dict(gradient_checkpointing_policy="selective", gradient_checkpointing_kwargs={"use_reentrant": True}),
     "gradient_checkpointing_policy='selective' needs the non-reentrant checkpoint"),
    (dict(gradient_checkpointing_policy="mlp", gradient_checkpointing_kwargs='{"use_reentrant": true}'),
     "needs the non-reentrant checkpoint"),  # the command line's JSON string
])
def test_config_refuses_a_bad_policy(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CPOConfig(output_dir=str(tmp_path), **kwargs)
