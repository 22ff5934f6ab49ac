"""The machine-translation workflow on top of the library: the CPO paper's recipe (arXiv 2401.08417, section 3).

- :mod:`~cpo.mt.prompts`: language names and the ALMA prompt (plain, or as a chat turn);
- :mod:`~cpo.mt.segments`: line-aligned and JSON segment files, read and written;
- :mod:`~cpo.mt.translate`: translation and sampled candidate translations with a causal LM;
- :mod:`~cpo.mt.scores`: chrF/BLEU, score files, and a user's scorer callable (a quality model, a checker);
- :mod:`~cpo.mt.candidates`: scored candidates from WMT files, MQM tables, or ``cpo generate`` output;
- :mod:`~cpo.mt.pairs`: the best candidate chosen, the worst rejected, as preference rows.

It imports the library, never the command line or the demo.
"""
