"""``cpo demo``: the CPO paper's claim in miniature, on SmolLM2-135M-Instruct, in minutes on a CPU.

The model learns to write numbers in words ("Write 347 in English words." -> "three hundred and forty-seven", ground
truth from ``num2words``). SFT trains on the correct answers only; CPO trains on the same answers against near misses
("three hundred and forty-six"), with the same steps, learning rate and data. Both are measured on held-out numbers
by greedy exact match and by preference accuracy. See docs/demo.md.

The demo uses only public functions of the library (and of :mod:`cpo.mt`): :mod:`~cpo.demo.task` builds the data,
:mod:`~cpo.demo.pipeline` trains and measures, :mod:`~cpo.demo.measure` scores answers, :mod:`~cpo.demo.report`
writes the table and figures. ``cpo demo`` (:mod:`cpo.cli.demo`) runs it.
"""

from ..extras import check_installed

check_installed("demo", "cpo demo")  # before any work: num2words, sacrebleu, matplotlib and gguf (not imported here)
