"""How far from TRL 1.16 are we? The largest relative difference of every shared metric over the first 3 steps.

Runs the same pairs through both trainers exactly as tests/test_trl_parity.py does (tiny Qwen2, trl-zen tables,
fp32, no accumulation; ours with its default paths: chunked logits, packing, prefix sharing) and prints one JSON line
per configuration: the largest relative difference (metrics of magnitude >= 0.05) and the largest absolute one, and
where they occurred. ``logits/*`` are left out (deliberately
different: ours average over completion tokens) and so is ``nll_loss`` where TRL logs 0 (``cpo_alpha=0``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import sys
import tempfile
from pathlib import Path

from common import ROOT, emit, machine

sys.path.insert(0, str(ROOT / "tests"))

CASES = [
    ("gpt2", "standard_preference", {"loss_type": "sigmoid"}),
    ("gpt2", "standard_preference", {"loss_type": "sigmoid", "label_smoothing": 0.1}),
    ("gpt2", "standard_preference", {"loss_type": "hinge"}),
    ("gpt2", "standard_preference", {"loss_type": "ipo"}),
    ("gpt2", "standard_preference", {"loss_type": "simpo"}),
    ("gpt2", "standard_preference", {"loss_type": "alphapo", "alpha": 0.25}),
    ("gpt2", "standard_preference", {"loss_type": "ipo", "alpha": -0.2}),
    ("qwen2", "standard_preference", {}),
    ("qwen2", "standard_implicit_prompt_preference", {}),
    ("qwen2", "conversational_preference", {}),
    ("qwen2", "conversational_implicit_prompt_preference", {}),
]


def tokenizer(name: str):
    """The real GPT-2 or Qwen2 tokenizer of tests/assets (as the parity tests use)."""
    from helpers import load_tokenizer

    return load_tokenizer(name, Path(tempfile.mkdtemp(prefix="cpo-parity-")))


def largest_difference(ours: list[dict], theirs: list[dict], skip: set[str]) -> dict:
    """The largest relative difference over metrics of magnitude >= 0.05, and the largest absolute difference over
    all (a relative difference means nothing for a margin of 0.002 that is a difference of two rewards near -5)."""
    rel, abs_, rel_at, abs_at = 0.0, 0.0, "", ""
    for step, (a, b) in enumerate(zip(ours, theirs), start=1):
        for key, ref in b.items():
            if key in skip or key.startswith("logits/") or not isinstance(ref, (int, float)) or key == "epoch":
                continue
            diff = abs(a[key] - ref)
            if diff > abs_:
                abs_, abs_at = diff, f"step {step} {key}"
            if abs(ref) >= 0.05 and diff / abs(ref) > rel:
                rel, rel_at = diff / abs(ref), f"step {step} {key}"
    return {"max_rel_diff": float(f"{rel:.3g}"), "rel_at": rel_at, "max_abs_diff": float(f"{abs_:.3g}"),
            "abs_at": abs_at}


def main() -> None:
    from helpers import zen
    from test_trl_parity import CHATML_EOS_TEMPLATE, run_both

    emit({"benchmark": "trl-parity", "machine": machine(), "steps": 3})
    tokenizers = {}
    for tok_name, table, config in CASES:
        tok = tokenizers.setdefault(tok_name, tokenizer(tok_name))
        if table.startswith("conversational"):
            tok = copy.deepcopy(tok)
            tok.chat_template = CHATML_EOS_TEMPLATE
            tok.bos_token, tok.eos_token = "<|im_start|>", "<|im_end|>"
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):  # Trainer prints logs
            ours, theirs = run_both(Path(tmp), tok, zen(table), **config)
        skip = {"nll_loss"} if config.get("loss_type") == "alphapo" else set()
        emit({"tokenizer": tok_name, "data": table, "config": config or {"loss_type": "sigmoid"},
              **largest_difference(ours, theirs, skip)})


if __name__ == "__main__":
    main()
