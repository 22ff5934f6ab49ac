"""Translation preference rows: a pair of the best/worst rule (:mod:`cpo.pairs.rule`) with the ALMA prompt."""

from __future__ import annotations

from ..errors import UsageError
from ..pairs.rule import Candidate, Segment, metadata
from .prompts import alma_prompt

FORMATS = ("standard", "conversational")


def pair_row(segment: Segment, chosen: Candidate, rejected: Candidate, *, src_lang: str, tgt_lang: str,
             fmt: str = "standard", completion_prefix: str = " ") -> dict:
    """One preference row with the ALMA prompt applied, plus metadata columns (which the trainer ignores).

    Standard: ``{"prompt": "Translate this ...\\nEnglish:", "chosen": " <text>", "rejected": " <text>"}``; the
    completions start with ``completion_prefix`` (a space) so that prompt + completion reads ``English: <text>``.
    Conversational: a user turn holding the same prompt, and one assistant turn per completion.
    """
    prompt = alma_prompt(segment.source, src_lang, tgt_lang)
    if fmt == "standard":
        row = {"prompt": prompt, "chosen": completion_prefix + chosen.text.strip(),
               "rejected": completion_prefix + rejected.text.strip()}
    elif fmt == "conversational":
        row = {
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen.text.strip()}],
            "rejected": [{"role": "assistant", "content": rejected.text.strip()}],
        }
    else:
        raise UsageError(f"Unknown output format {fmt!r}; use one of {', '.join(FORMATS)}.")
    return row | metadata(segment, chosen, rejected)


