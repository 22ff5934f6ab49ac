"""The machine-translation workflow on top of the library: the CPO paper's recipe (arXiv 2401.08417, section 3).

- :mod:`~cpo.mt.prompts`: language names and the ALMA prompt (plain, or as a chat turn);
- :mod:`~cpo.mt.segments`: line-aligned and JSON segment files (``translation.<lang>``);
- :mod:`~cpo.mt.translate`: translation and sampled candidate translations with a causal LM;
- :mod:`~cpo.mt.scores`: chrF and BLEU against references (sacrebleu);
- :mod:`~cpo.mt.candidates`: scored candidates from WMT files and MQM tables;
- :mod:`~cpo.mt.pairs`: a pair as a translation row with the ALMA prompt;
- :mod:`~cpo.mt.roundtrip`: the round-trip judge, a reference-free scorer for ``cpo prefs --scorer``.

Pair building itself (the best/worst rule, ``cpo generate``'s candidates, scorers, the ALMA-R rule) is the library's
:mod:`cpo.pairs`. This package imports the library, never the command line or the demo.
"""
