"""Compute routes (cpo.routes): the probe's error and tolerance by hand, the routes chosen for sdpa and eager models,
layouts refused or noted, path attention falling back to the dense mask, and a new decision without chunked
log-probs leaving the first one untouched."""

import dataclasses
import logging

import pytest
import torch
from helpers import tiny_qwen2, train_args, zen

from cpo import CPOTrainer
from cpo.path_attention import PATH_ATTENTION
from cpo.routes import probe_error, probe_tolerance, select_routes, without_chunked_logps


def test_probe_error_is_relative_to_the_larger_of_one_and_the_reference():
    """|2.5 - 2| / max(1, 2) = 0.25; |0.3 - 0.1| / max(1, 0.1) = 0.2 (small references count absolutely)."""
    assert probe_error(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0])) == pytest.approx(0.25)
    assert probe_error(torch.tensor([0.3]), torch.tensor([0.1])) == pytest.approx(0.2)
    assert (probe_tolerance(torch.float32), probe_tolerance(torch.bfloat16)) == (1e-4, 3e-2)


def test_an_sdpa_model_gets_path_attention_and_one_row_an_eager_model_the_dense_mask(tmp_path):
    for attn, expected, row_tokens in (("sdpa", PATH_ATTENTION, 0), ("eager", "eager", None)):
        model = tiny_qwen2(64, attn_implementation=attn)
        routes = select_routes(model, train_args(tmp_path), 0, encoder_decoder=False, router_logits=False)
        assert routes.attn_impl == expected == model.config._attn_implementation
        collator = routes.collator
        assert (collator.packed, collator.shared_prompt, collator.max_row_tokens) == (True, True, row_tokens)
        assert routes.head is not None and routes.notes[:3] == (
            "chunked log-probs: on", "padding-free packing: on", "prefix sharing: on")
        assert ("attention: fused causal sdpa over the paths (no (L, L) mask)" in routes.notes) == (attn == "sdpa")


def test_layouts_turned_off_leave_the_model_on_sdpa(tmp_path):
    model = tiny_qwen2(64, attn_implementation="sdpa")
    args = train_args(tmp_path, padding_free=False, prefix_sharing=False, chunked_logits=False)
    routes = select_routes(model, args, 0, encoder_decoder=False, router_logits=False)
    assert routes.attn_impl == "sdpa" == model.config._attn_implementation
    assert (routes.collator.packed, routes.collator.shared_prompt, routes.head) == (False, False, None)
    assert routes.notes == ("chunked log-probs: off (chunked_logits=False)", "padding-free packing: off "
                            "(padding_free=False)", "prefix sharing: off (prefix_sharing=False)")


def test_a_layout_the_model_cannot_run_is_noted_by_default_and_refused_when_asked_for(tmp_path):
    model = tiny_qwen2(64, attn_implementation="sdpa")
    routes = select_routes(model, train_args(tmp_path), 0, encoder_decoder=False, router_logits=True)
    assert (routes.collator.packed, routes.collator.shared_prompt, routes.attn_impl) == (False, False, "sdpa")
    assert "padding-free packing: off, because the MoE router aux loss is computed over a 2D padding mask" in routes.notes
    with pytest.raises(ValueError, match="prefix_sharing=True cannot be honoured: the MoE router aux loss"):
        select_routes(model, train_args(tmp_path, prefix_sharing=True), 0, encoder_decoder=False, router_logits=True)
    user = select_routes(model, train_args(tmp_path), 0, encoder_decoder=False, router_logits=False, layout=False)
    assert user.collator is None and "batch layout: the data_collator given" in user.notes


def test_without_chunked_logps_is_a_new_decision_and_removes_the_hook(tmp_path, caplog):
    model = tiny_qwen2(64, attn_implementation="eager")
    routes = select_routes(model, train_args(tmp_path), 0, encoder_decoder=False, router_logits=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        routes.head = None
    with caplog.at_level(logging.WARNING, logger="cpo"):
        dropped = without_chunked_logps(routes, "ZeRO-3 shards the LM head")
    assert "Chunked log-probs: off, because ZeRO-3 shards the LM head." in caplog.text
    assert (dropped.capture, dropped.head, dropped.collator) == (None, None, routes.collator)
    assert dropped.notes == (*routes.notes, "chunked log-probs: off, because ZeRO-3 shards the LM head")
    assert routes.head is not None  # the first decision is untouched
    with torch.no_grad(), routes.capture:
        model(input_ids=torch.tensor([[5, 6, 7]]))
    assert routes.capture.hidden is None  # the hook is gone: nothing captured
    assert without_chunked_logps(dropped, "again") is dropped


def test_the_trainer_runs_the_routes_it_was_given(tmp_path, tok):
    """The trainer's collator and attention are the routes', and both layouts off leave the model on sdpa."""
    for attn, expected in (("sdpa", PATH_ATTENTION), ("eager", "eager")):
        trainer = CPOTrainer(model=tiny_qwen2(len(tok), attn_implementation=attn), args=train_args(tmp_path / attn),
                             processing_class=tok, train_dataset=zen("standard_preference"))
        assert trainer.routes.attn_impl == expected and trainer.data_collator is trainer.routes.collator
        assert trainer.data_collator.max_row_tokens == (0 if attn == "sdpa" else None)
    off = CPOTrainer(model=tiny_qwen2(len(tok), attn_implementation="sdpa"),
                     args=train_args(tmp_path / "off", padding_free=False, prefix_sharing=False),
                     processing_class=tok, train_dataset=zen("standard_preference"))
    assert off.routes.attn_impl == "sdpa" and off.model.config._attn_implementation == "sdpa"


def test_a_model_that_fails_path_attention_keeps_its_layouts_with_the_dense_mask(tmp_path, monkeypatch):
    import cpo.path_attention

    def broken(*args, **kwargs):
        raise RuntimeError("layout not passed on")

    monkeypatch.setattr(cpo.path_attention, "block_attention", broken)
    model = tiny_qwen2(64, attn_implementation="sdpa")
    routes = select_routes(model, train_args(tmp_path), 0, encoder_decoder=False, router_logits=False)
    assert routes.attn_impl == "sdpa" and model.config._attn_implementation == "sdpa"
    assert (routes.collator.packed, routes.collator.shared_prompt, routes.collator.max_row_tokens) == (True, True, None)
    assert ("path attention: off, because the model failed on it (RuntimeError: layout not passed on)"
            in routes.notes)
