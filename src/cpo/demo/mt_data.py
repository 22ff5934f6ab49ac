"""The German->English sentences that ``cpo demo --task mt`` trains and measures on, shipped inside the package.

Two slices of the WMT test sets with their human references (``data/README.md`` beside this file has the sources,
licence, the cut and the sha256 of each):

- ``dev``: all 1,002 sentences of the WMT'21 de-en development set, which :func:`split_dev` divides into stage-1
  (SFT) prompts, preference prompts and a validation hold-out;
- ``test``: 248 sentences of the WMT'22 de-en test set (every 8th line), only ever measured on.

>>> [s.id for s in load_slice("test")[:3]]
[1, 9, 17]
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

SLICES = {"dev": "wmt21-deen-dev.jsonl", "test": "wmt22-deen-test.jsonl"}
REBUILD = "python tests/assets/build_assets.py --mt-slices DATA (in a cpo clone, DATA holding wmt-human-written/)"


@dataclass(frozen=True)
class Sentence:
    """One source sentence and its human reference; ``id`` is its 1-based line in the WMT file it comes from."""

    id: int
    de: str
    en: str


@dataclass(frozen=True)
class DevSplit:
    """The WMT'21 dev sentences in three disjoint parts: stage-1 SFT, preference prompts, validation hold-out."""

    sft: list[Sentence]
    pref: list[Sentence]
    validation: list[Sentence]


def data_folder():
    """The package's data folder (a ``Traversable``: a folder on disk, or a place inside a zip)."""
    return files("cpo.demo").joinpath("data")


def _sentence(raw: str, name: str, n: int) -> Sentence:
    try:
        row = json.loads(raw)
        ok = (isinstance(row, dict) and type(row.get("id")) is int
              and all(isinstance(row.get(k), str) and row[k].strip() for k in ("de", "en")))
    except json.JSONDecodeError:
        ok = False
    if not ok:
        raise ValueError(f"The package file {name}, line {n}, is not a {{\"id\": int, \"de\": text, \"en\": text}} "
                         f"row; the installation is damaged. Reinstall cpo, or rebuild the file: {REBUILD}")
    return Sentence(row["id"], row["de"], row["en"])


def load_slice(name: str, folder=None) -> list[Sentence]:
    """The sentences of slice ``name`` (``"dev"`` or ``"test"``), in file order.

    Args:
        folder: where to read the file (default: :func:`data_folder`).

    Raises:
        KeyError: an unknown slice name.
        FileNotFoundError: the file is not there (naming it and the fix).
        ValueError: a line that is not a row of the slice (naming it).
    """
    if name not in SLICES:
        raise KeyError(f"No WMT slice {name!r}; the package ships {', '.join(SLICES)}.")
    path = (folder if folder is not None else data_folder()).joinpath(SLICES[name])
    if not path.is_file():
        raise FileNotFoundError(f"The package data file {SLICES[name]} is missing (looked at {path}). Reinstall cpo "
                                f"(`pip install .` copies it from src/cpo/demo/data), or rebuild it: {REBUILD}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [_sentence(raw, SLICES[name], n) for n, raw in enumerate(lines, start=1)]


def load_slices(folder=None) -> dict[str, list[Sentence]]:
    """Every slice, by name: ``{"dev": [...], "test": [...]}`` (see :func:`load_slice`)."""
    return {name: load_slice(name, folder) for name in SLICES}


def split_dev(dev: Sequence[Sentence], *, pref: int = 400, validation: int = 100, seed: int = 0) -> DevSplit:
    """Split the dev sentences into three disjoint parts, by a seeded shuffle: the first ``validation`` go to the
    hold-out, the next ``pref`` to the preference prompts, the rest to stage 1. Each part keeps file order.

    >>> split = split_dev([Sentence(i, "x", "y") for i in range(1, 11)], pref=3, validation=2)
    >>> len(split.sft), len(split.pref), len(split.validation)
    (5, 3, 2)

    Raises:
        ValueError: sizes below 0, or leaving stage 1 with no sentence.
    """
    if pref < 0 or validation < 0 or pref + validation >= len(dev):
        raise ValueError(f"pref={pref} and validation={validation} must be >= 0 and leave stage 1 at least one of "
                         f"the {len(dev)} sentences.")
    order = list(range(len(dev)))
    random.Random(seed).shuffle(order)
    held, prefs = set(order[:validation]), set(order[validation: validation + pref])
    part = {i: "validation" if i in held else "pref" if i in prefs else "sft" for i in range(len(dev))}
    out = {"sft": [], "pref": [], "validation": []}
    for i, sentence in enumerate(dev):
        out[part[i]].append(sentence)
    return DevSplit(**out)
