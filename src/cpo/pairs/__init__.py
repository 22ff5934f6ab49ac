"""Preference-pair building, the CPO paper's way (arXiv 2401.08417, section 3): candidates are scored, the best is
chosen and the worst rejected.

- :mod:`~cpo.pairs.rule`: candidates and segments, the best/worst rule, and the report of what was kept or skipped;
- :mod:`~cpo.pairs.candidates`: the candidates of prompts as ``cpo generate`` writes them, scored;
- :mod:`~cpo.pairs.scorers`: score files and a user's scorer callable (a quality model, a reward model, a checker);
- :mod:`~cpo.pairs.alma`: the ALMA-R rule on the paper's released triplets (and X-ALMA's pairs).

Translation specifics (the ALMA prompt, WMT and MQM readers, chrF/BLEU) are :mod:`cpo.mt`, which uses this package.
"""
