"""Translation prompts: language names, the ALMA prompt (arXiv 2309.11674), and its chat-template form.

>>> alma_prompt("Guten Morgen.", "de", "en")
'Translate this from German to English:\\nGerman: Guten Morgen.\\nEnglish:'
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UsageError

# ISO 639-1 codes of the WMT'22/'23 directions and ALMA's table, plus a few common ones.
LANGUAGES = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish", "fr": "French",
    "gu": "Gujarati", "ha": "Hausa", "he": "Hebrew", "hr": "Croatian", "is": "Icelandic", "it": "Italian",
    "ja": "Japanese", "ko": "Korean", "liv": "Livonian", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "sah": "Yakut", "uk": "Ukrainian", "zh": "Chinese",
}
TEMPLATES = ("alma", "chat")


def language_name(code: str) -> str:
    """The English name of a language code (``"de"`` -> ``"German"``); a full name is returned as it is.

    Raises:
        UsageError: for an unknown two- or three-letter code, listing the known ones.
    """
    if code in LANGUAGES:
        return LANGUAGES[code]
    if code.lower() in LANGUAGES:
        return LANGUAGES[code.lower()]
    if len(code) > 3 and code[0].isupper():  # "German": the user gave the name itself
        return code
    raise UsageError(
        f"Unknown language code {code!r}. Use one of {', '.join(sorted(LANGUAGES))}, or give the language's English "
        "name with a capital letter (e.g. 'Swahili')."
    )


def alma_instruction(src_lang: str, tgt_lang: str) -> str:
    """``"Translate this from German to English:"``: the first line of the ALMA prompt (arXiv 2309.11674)."""
    return f"Translate this from {language_name(src_lang)} to {language_name(tgt_lang)}:"


def alma_prompt(source: str, src_lang: str, tgt_lang: str) -> str:
    """The ALMA / ALMA-R zero-shot prompt: instruction, source line, and the target-language cue to continue."""
    return f"{alma_instruction(src_lang, tgt_lang)}\n{language_name(src_lang)}: {source}\n{language_name(tgt_lang)}:"


def few_shot_prefix(shots: Sequence[tuple[str, str]], src_lang: str, tgt_lang: str) -> str:
    """Worked examples to put before an ALMA prompt (few-shot): each ``(source, translation)`` as its own ALMA prompt
    and answer, followed by a blank line; ``""`` for no shots.

    >>> few_shot_prefix([("Guten Morgen.", "Good morning.")], "de", "en")
    'Translate this from German to English:\\nGerman: Guten Morgen.\\nEnglish: Good morning.\\n\\n'
    """
    return "".join(f"{alma_prompt(s, src_lang, tgt_lang)} {t}\n\n" for s, t in shots)


def build_prompts(sources: Sequence[str], src_lang: str, tgt_lang: str, template: str, tokenizer,
                  shots: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The prompt text of each source sentence.

    ``alma``: ``"Translate this from German to English:\\nGerman: <src>\\nEnglish:"``, after the worked examples
    of ``shots`` (:func:`few_shot_prefix`) if any. ``chat``: the zero-shot text as a user turn, rendered by the
    tokenizer's chat template with the assistant's generation prompt.
    """
    if template == "alma":
        prefix = few_shot_prefix(shots, src_lang, tgt_lang)
        return [prefix + alma_prompt(s, src_lang, tgt_lang) for s in sources]
    if shots:
        raise UsageError("Worked examples (shots) go with the ALMA prompt only; use --template alma.")
    if template != "chat":
        raise UsageError(f"Unknown template {template!r}; use one of {', '.join(TEMPLATES)}.")
    if getattr(tokenizer, "chat_template", None) is None:
        raise UsageError("--template chat needs a tokenizer with a chat template, and this one has none. Use "
                         "--template alma, or save a chat template with the tokenizer.")
    from ..rows import render_prompt

    return [render_prompt([{"role": "user", "content": alma_prompt(s, src_lang, tgt_lang)}], tokenizer)
            for s in sources]


def prompt_ids(sources: Sequence[str], src_lang: str, tgt_lang: str, template: str, tokenizer,
               shots: Sequence[tuple[str, str]] = ()) -> list[list[int]]:
    """Token ids of each source's prompt, exactly as the trainer tokenizes the same prompt in a preference row
    (:func:`cpo.tokenization.encode_prompts`: BOS first for ``alma``, nothing added to a chat-templated prompt)."""
    from ..tokenization import encode_prompts

    prompts = build_prompts(sources, src_lang, tgt_lang, template, tokenizer, shots)
    return encode_prompts(tokenizer, prompts, templated=template == "chat")
