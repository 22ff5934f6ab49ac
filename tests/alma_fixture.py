"""Hand-written rows in the schema of haoranxu/ALMA-R-Preference, with every edge case of the ALMA-R rule
(tests/pairs/test_alma.py, tests/cli/test_prefs.py). The texts are placeholders and the scores made up."""

FIELDS = ("kiwi", "xcomet", "kiwi_xcomet")


def row(pair="de-en", required="", delta=0, en=None, de=None, texts=None, **extra):
    """A row of haoranxu/ALMA-R-Preference. ``en``/``de``: (ref, gpt4, alma) scores, one tuple for every field or
    a dict per field; ``texts``: the English candidates (the German ones are 'D-ref', 'D-gpt4', 'D-alma')."""
    a, b = pair.split("-")
    t = {"language_pair": pair, "Delta": delta, "required_directions": required}
    for lang, scores, words in ((b, en, texts or ("ref", "gpt4", "alma")), (a, de, ("D-ref", "D-gpt4", "D-alma"))):
        t[lang], t[f"gpt4_{lang}"], t[f"alma_{lang}"] = words
        for f in FIELDS:
            chosen = (scores or (0.5, 0.4, 0.3)) if not isinstance(scores, dict) else scores[f]
            for name, s in zip(("ref", "gpt4", "alma"), chosen):
                t[f"{name}_{lang}_{f}"] = s
    t.update(extra)
    return {"translation": t}


ROWS = [
    # 0: both directions; the English side's winner depends on the score field, the German side rejects the reference
    row(en={"kiwi": (0.9, 0.8, 0.1), "xcomet": (0.1, 0.8, 0.9), "kiwi_xcomet": (0.5, 0.8, 0.5)}, de=(0.5, 0.7, 0.6)),
    row(required="de-en", en=(0.8, 0.8, 0.3)),  # 1: tie at the top: the reference wins it
    row(required="de-en", en=(0.2, 0.9, 0.2)),  # 2: tie at the bottom: the reference is rejected
    row(required="de-en", en=(0.5, 0.5, 0.5)),  # 3: all equal: chosen = rejected = reference, dropped
    row(required="de-en", en=(0.5, 0.9, 0.1), texts=("ref", "same", "same")),  # 4: identical texts, dropped
    row(required="de-en", delta=2, en=(0.9, 0.1, 0.8)),  # 5: a human preferred GPT-4, whatever the scores
    row(required="de-en", delta=-1, en=(0.1, 0.9, 0.8)),  # 6: a human preferred ALMA
    row(pair="cs-en", en=(0.9, 0.5, 0.1)),  # 7: a direction that is not asked for
    row(required="en-de", de=(0.1, 0.2, 0.3)),  # 8: only English -> German
]
EXPECTED_ROW0 = {"kiwi": ("ref", "alma"), "xcomet": ("alma", "ref"), "kiwi_xcomet": ("gpt4", "ref")}
