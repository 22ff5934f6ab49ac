"""Choose the fastest compute paths a model supports, each verified on a probe batch, never assumed.

- chunked log-probs: the head applied chunk by chunk at completion positions (see :mod:`cpo.chunked`);
- padding-free packing and prefix sharing (see :mod:`cpo.layouts`).

Every fast path is checked against its reference on a tiny batch with the model's own attention implementation
before training starts. A path that fails the check, or that the model cannot run, is turned off with one log line
saying why; training then uses the reference path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from .chunked import LMHead, head_logits
from .layouts import PreferenceCollator
from .modeling import (
    PATH_ATTENTION,
    HeadInputCapture,
    forward_logps,
    lm_head_of,
    restore_sdpa,
    text_config,
    use_path_attention,
)

logger = logging.getLogger("cpo")


@dataclass
class Paths:
    """What :func:`select_paths` chose. ``collator`` is None for encoder-decoder models (their own collator)."""

    capture: HeadInputCapture | None = None
    head: object | None = None
    collator: PreferenceCollator | None = None
    attn_impl: str = "eager"
    notes: list[str] = field(default_factory=list)


def probe_tolerance(dtype: torch.dtype) -> float:
    """How far a fast path may be from its reference on a probe batch: fp32 rounding in fp32 (1e-4), the rounding
    of half-precision matmuls otherwise (3e-2); relative to the larger of 1 and the reference's largest value."""
    return 1e-4 if dtype == torch.float32 else 3e-2


def probe_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |got - expected| / max(1, max |expected|)`` in fp32: the error :func:`probe_tolerance` bounds."""
    got, expected = got.float(), expected.float()
    return (got - expected).abs().max().item() / max(expected.abs().max().item(), 1.0)


def probe_inputs(model: nn.Module, length: int = 6) -> dict[str, torch.Tensor]:
    """A tiny deterministic batch for self-checks: two rows of token ids from the start of the vocabulary."""
    device = next(model.parameters()).device
    vocab = int(getattr(text_config(model), "vocab_size", 0) or 32)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(low=min(3, vocab - 1), high=vocab, size=(2, length), generator=gen).to(device)
    inputs = {"input_ids": ids, "use_cache": False}
    if getattr(text_config(model), "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = ids[:, : length // 2]
    return inputs


def verify_head(model: nn.Module, capture: HeadInputCapture, head: LMHead) -> str:
    """Check that ``head(captured hidden)`` reproduces the model's own logits; returns "" or why not."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            inputs = probe_inputs(model)
            expected = model(**inputs).logits.float()
            with capture:
                model(**inputs)
            hidden = capture.hidden
            capture.hidden = None
            got = head_logits(hidden.reshape(-1, hidden.shape[-1]), head).float().reshape(expected.shape)
    finally:
        model.train(was_training)
    err = probe_error(got, expected)
    if not err <= probe_tolerance(hidden.dtype):
        return (f"the model's logits are not a linear head of its last hidden states (relative error {err:.2e}); "
                "it post-processes them in a way the chunked path does not know")
    return ""


def _probe_features(vocab: int) -> list[dict]:
    """Two pairs with different lengths, a 1-token completion among them."""
    gen = torch.Generator().manual_seed(1)

    def ids(n):
        return torch.randint(min(3, vocab - 1), vocab, (n,), generator=gen).tolist()

    return [
        {"prompt_input_ids": ids(5), "chosen_input_ids": ids(3), "rejected_input_ids": ids(1), "row_index": 0},
        {"prompt_input_ids": ids(2), "chosen_input_ids": ids(4), "rejected_input_ids": ids(6), "row_index": 1},
    ]


def _probe_logps(model, collator, attn_impl, dtype, paths, router_logits) -> torch.Tensor:
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in collator(_probe_features(int(text_config(model).vocab_size))).items()}
    out = forward_logps(model, batch, attn_impl=attn_impl, dtype=dtype, capture=paths.capture, head=paths.head,
                        router_logits=router_logits)
    # per (sequence, target position): sort by sequence, then by order within the sequence
    order = torch.argsort(batch["target_seq"] * 10_000 + torch.arange(len(batch["target_seq"]), device=device))
    return out.token_logps[order].float()


def verify_layout(model, candidate: PreferenceCollator, attn_impl: str, paths: Paths, router_logits: bool) -> str:
    """Compare per-token log-probs of a layout with the padded reference on a probe batch; "" or why not."""
    dtype = next(model.parameters()).dtype
    reference = PreferenceCollator(candidate.pad_token_id)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = _probe_logps(model, reference, attn_impl, dtype, paths, router_logits)
            got = _probe_logps(model, candidate, attn_impl, dtype, paths, router_logits)
    except Exception as err:  # a model that cannot take the layout at all
        return f"the model failed on it ({type(err).__name__}: {str(err)[:160]})"
    finally:
        model.train(was_training)
    err = probe_error(got, expected)
    if not err <= probe_tolerance(dtype):
        return (f"its log-probs differ from the padded layout's by {err:.2e} (relative) with attn_implementation="
                f"'{attn_impl}' (the attention ignores position_ids or the custom mask)")
    return ""


def select_head(model: nn.Module, enabled: bool, notes: list[str]) -> tuple[HeadInputCapture | None, object | None]:
    if not enabled:
        notes.append("chunked log-probs: off (chunked_logits=False)")
        return None, None
    head, module, reason = lm_head_of(model)
    if head is not None:
        capture = HeadInputCapture(module)
        reason = verify_head(model, capture, head)
        if not reason:
            notes.append("chunked log-probs: on")
            return capture, head
        capture.remove()
    notes.append(f"chunked log-probs: off, because {reason}")
    return None, None


def _off(paths: Paths, name: str, flag: str, wanted: bool | None, why: str) -> None:
    """Turn a layout feature off: a logged reason by default, an error if the user asked for it explicitly."""
    if wanted:
        raise ValueError(f"{flag}=True cannot be honoured: {why}. Set {flag}=False (or leave it unset).")
    if wanted is None:
        paths.notes.append(f"{name}: off, because {why}")


def select_layout(model, args, pad_token_id: int, attn_impl: str, paths: Paths, router_logits: bool):
    """Padding-free packing and prefix sharing: on by default (``None``) where verified, off where asked."""
    packed, shared = args.padding_free is not False, args.prefix_sharing is not False
    if router_logits:
        why = "the MoE router aux loss is computed over a 2D padding mask"
        _off(paths, "padding-free packing", "padding_free", args.padding_free, why)
        _off(paths, "prefix sharing", "prefix_sharing", args.prefix_sharing, why)
        packed = shared = False
    if shared and attn_impl.startswith("flash"):
        _off(paths, "prefix sharing", "prefix_sharing", args.prefix_sharing, f"{attn_impl} takes no custom mask")
        shared = False
    if packed or shared:
        attn_impl = use_path_attention(model)
    # varlen kernels and causal paths cost nothing per row: one long row, no padding; a dense mask costs L^2 per row
    row_tokens = 0 if attn_impl.startswith("flash") or attn_impl == PATH_ATTENTION else None
    while packed or shared:
        candidate = PreferenceCollator(pad_token_id, packed=packed, shared_prompt=shared, max_row_tokens=row_tokens)
        why = verify_layout(model, candidate, attn_impl, paths, router_logits)
        if not why:
            break
        if attn_impl == PATH_ATTENTION:  # e.g. a model that does not pass cpo's layout on: retry with a dense mask
            paths.notes.append(f"path attention: off, because {why}")
            attn_impl, row_tokens = restore_sdpa(model), None
            continue
        if shared:
            _off(paths, "prefix sharing", "prefix_sharing", args.prefix_sharing, why)
            shared = False
        else:
            _off(paths, "padding-free packing", "padding_free", args.padding_free, why)
            packed = False
    for name, on, flag in (("padding-free packing", packed, "padding_free"), ("prefix sharing", shared, "prefix_sharing")):
        if on:
            paths.notes.append(f"{name}: on")
        elif getattr(args, flag) is False:
            paths.notes.append(f"{name}: off ({flag}=False)")
    if not (packed or shared):
        attn_impl = restore_sdpa(model)
    elif attn_impl == PATH_ATTENTION:
        paths.notes.append("attention: fused causal sdpa per path (no (L, L) mask)")
    paths.attn_impl = attn_impl
    return PreferenceCollator(pad_token_id, packed=packed, shared_prompt=shared, max_row_tokens=row_tokens)


def select_paths(
    model, args, pad_token_id: int, attn_impl: str, encoder_decoder: bool, router_logits: bool, layout: bool = True
) -> Paths:
    """Choose and verify the log-prob path and (unless ``layout`` is False: a user collator) the batch layout for
    ``model``; log one line per choice."""
    paths = Paths(attn_impl=attn_impl)
    paths.capture, paths.head = select_head(model, args.chunked_logits, paths.notes)
    if not layout:
        paths.notes.append("batch layout: the data_collator given")
    elif encoder_decoder:
        _off(paths, "padding-free packing", "padding_free", args.padding_free, "the model is encoder-decoder")
        _off(paths, "prefix sharing", "prefix_sharing", args.prefix_sharing, "the model is encoder-decoder")
    else:
        paths.collator = select_layout(model, args, pad_token_id, attn_impl, paths, router_logits)
    for note in paths.notes:
        (logger.warning if "off, because" in note else logger.info)(note[0].upper() + note[1:] + ".")
    return paths
