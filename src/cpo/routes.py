"""Choose the fastest compute routes a model supports, each verified on a probe batch, never assumed.

- chunked log-probs: the head applied chunk by chunk at completion positions (see :mod:`cpo.chunked`);
- padding-free packing and prefix sharing (see :mod:`cpo.layouts`), with path attention on sdpa models (see
  :mod:`cpo.path_attention`) and the dense block mask otherwise.

Every fast route is checked against its reference on a tiny batch with the model's own attention implementation
before training starts. A route that fails the check, or that the model cannot run, is turned off with one log line
saying why; training then uses the reference route. The decision is a :class:`Routes`: the trainer asks
:func:`select_routes` for one, and :func:`without_chunked_logps` for a new one when sharding takes the head away.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from .chunked import LMHead, head_logits
from .layouts import PreferenceCollator
from .loading import attention_implementation, text_config
from .modeling import HeadInputCapture, forward_logps, lm_head_of
from .path_attention import PATH_ATTENTION, restore_sdpa, use_path_attention

logger = logging.getLogger("cpo")


@dataclass(frozen=True)
class Routes:
    """What :func:`select_routes` chose: the head capture and head of chunked log-probs (None: full logits), the
    batch layout's collator (None for encoder-decoder models, which get their own, and for a user's collator), the
    attention implementation its batches are built for, and one note per choice."""

    capture: HeadInputCapture | None = None
    head: LMHead | None = None
    collator: PreferenceCollator | None = None
    attn_impl: str = "eager"
    notes: tuple[str, ...] = ()


def probe_tolerance(dtype: torch.dtype) -> float:
    """How far a fast route may be from its reference on a probe batch: fp32 rounding in fp32 (1e-4), the rounding
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
                "it post-processes them in a way chunked log-probs do not know")
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


def _probe_logps(model, collator, attn_impl, dtype, capture, head, router_logits) -> torch.Tensor:
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in collator(_probe_features(int(text_config(model).vocab_size))).items()}
    out = forward_logps(model, batch, attn_impl=attn_impl, dtype=dtype, capture=capture, head=head,
                        router_logits=router_logits)
    # per (sequence, target position): sort by sequence, then by order within the sequence
    order = torch.argsort(batch["target_seq"] * 10_000 + torch.arange(len(batch["target_seq"]), device=device))
    return out.token_logps[order].float()


def verify_layout(model, candidate: PreferenceCollator, attn_impl: str, *, capture: HeadInputCapture | None,
                  head: LMHead | None, router_logits: bool) -> str:
    """Compare per-token log-probs of a layout with the padded reference on a probe batch (with the log-prob route
    chosen: ``capture`` and ``head``, or full logits); "" or why not."""
    dtype = next(model.parameters()).dtype
    reference = PreferenceCollator(candidate.pad_token_id)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = _probe_logps(model, reference, attn_impl, dtype, capture, head, router_logits)
            got = _probe_logps(model, candidate, attn_impl, dtype, capture, head, router_logits)
    except Exception as err:  # a model that cannot take the layout at all
        return f"the model failed on it ({type(err).__name__}: {str(err)[:160]})"
    finally:
        model.train(was_training)
    err = probe_error(got, expected)
    if not err <= probe_tolerance(dtype):
        return (f"its log-probs differ from the padded layout's by {err:.2e} (relative) with attn_implementation="
                f"'{attn_impl}' (the attention ignores position_ids or the custom mask)")
    return ""


def select_head(model: nn.Module, enabled: bool, notes: list[str]) -> tuple[HeadInputCapture | None, LMHead | None]:
    """The log-prob route: a verified head capture and head (chunked log-probs), or ``(None, None)`` (full logits)."""
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


def _off(notes: list[str], name: str, flag: str, wanted: bool | None, why: str) -> None:
    """Turn a layout feature off: a logged reason by default, an error if the user asked for it explicitly."""
    if wanted:
        raise ValueError(f"{flag}=True cannot be honoured: {why}. Set {flag}=False (or leave it unset).")
    if wanted is None:
        notes.append(f"{name}: off, because {why}")


def select_layout(model, args, pad_token_id: int, attn_impl: str, router_logits: bool, check,
                  notes: list[str]) -> tuple[PreferenceCollator, str]:
    """Padding-free packing and prefix sharing: on by default (``None``) where verified, off where asked.

    ``check(collator, attn_impl)`` is "" or why a layout fails its probe. An sdpa model tries path attention first,
    and keeps its layouts with the dense mask where that fails; then prefix sharing, then packing, is dropped until
    the layout passes. Returns the collator and the attention implementation its batches are built for.
    """
    packed, shared = args.padding_free is not False, args.prefix_sharing is not False
    if router_logits:
        why = "the MoE router aux loss is computed over a 2D padding mask"
        _off(notes, "padding-free packing", "padding_free", args.padding_free, why)
        _off(notes, "prefix sharing", "prefix_sharing", args.prefix_sharing, why)
        packed = shared = False
    if shared and attn_impl.startswith("flash"):
        _off(notes, "prefix sharing", "prefix_sharing", args.prefix_sharing, f"{attn_impl} takes no custom mask")
        shared = False
    if (packed or shared) and use_path_attention(model) == PATH_ATTENTION:
        why = check(PreferenceCollator(pad_token_id, packed=packed, shared_prompt=shared, max_row_tokens=0),
                    PATH_ATTENTION)
        if why:  # e.g. a model that does not pass cpo's layout on: keep the layouts with a dense mask
            notes.append(f"path attention: off, because {why}")
        attn_impl = restore_sdpa(model) if why else PATH_ATTENTION
    # varlen kernels and causal paths cost nothing per row: one long row, no padding; a dense mask costs L^2 per row
    row_tokens = 0 if attn_impl.startswith("flash") or attn_impl == PATH_ATTENTION else None
    while (packed or shared) and attn_impl != PATH_ATTENTION:
        why = check(PreferenceCollator(pad_token_id, packed=packed, shared_prompt=shared, max_row_tokens=row_tokens),
                    attn_impl)
        if not why:
            break
        if shared:
            _off(notes, "prefix sharing", "prefix_sharing", args.prefix_sharing, why)
            shared = False
        else:
            _off(notes, "padding-free packing", "padding_free", args.padding_free, why)
            packed = False
    for name, on, flag in (("padding-free packing", packed, "padding_free"), ("prefix sharing", shared, "prefix_sharing")):
        if on:
            notes.append(f"{name}: on")
        elif getattr(args, flag) is False:
            notes.append(f"{name}: off ({flag}=False)")
    if not (packed or shared):
        attn_impl = restore_sdpa(model)
    elif attn_impl == PATH_ATTENTION:
        notes.append("attention: fused causal sdpa over the paths (no (L, L) mask)")
    return PreferenceCollator(pad_token_id, packed=packed, shared_prompt=shared, max_row_tokens=row_tokens), attn_impl


def _log(note: str) -> None:
    (logger.warning if "off, because" in note else logger.info)(note[0].upper() + note[1:] + ".")


def select_routes(model, args, pad_token_id: int, encoder_decoder: bool, router_logits: bool,
                  layout: bool = True) -> Routes:
    """Choose and verify the log-prob route and (unless ``layout`` is False: a user collator) the batch layout for
    ``model`` under ``args`` (a :class:`cpo.CPOConfig`); log one line per choice. May switch the model to path
    attention (:func:`cpo.path_attention.use_path_attention`)."""
    notes: list[str] = []
    attn_impl, collator = attention_implementation(model), None
    capture, head = select_head(model, args.chunked_logits, notes)
    if not layout:
        notes.append("batch layout: the data_collator given")
    elif encoder_decoder:
        _off(notes, "padding-free packing", "padding_free", args.padding_free, "the model is encoder-decoder")
        _off(notes, "prefix sharing", "prefix_sharing", args.prefix_sharing, "the model is encoder-decoder")
    else:
        check = partial(verify_layout, model, capture=capture, head=head, router_logits=router_logits)
        collator, attn_impl = select_layout(model, args, pad_token_id, attn_impl, router_logits, check, notes)
    for note in notes:
        _log(note)
    return Routes(capture, head, collator, attn_impl, tuple(notes))


def without_chunked_logps(routes: Routes, why: str) -> Routes:
    """``routes`` with chunked log-probs off (the model computes full logits), for a reason known only once the
    accelerator is set up (sharding that keeps the head out of reach); logged, and the head's hook removed."""
    if routes.head is None:
        return routes
    routes.capture.remove()
    note = f"chunked log-probs: off, because {why}"
    _log(note)
    return replace(routes, capture=None, head=None, notes=(*routes.notes, note))
