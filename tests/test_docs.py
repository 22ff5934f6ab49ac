"""The docs run: every ```bash block of README.md and docs/*.md, in order, in a fresh folder, so they cannot rot.

The convention, written in the Markdown itself (HTML comments, which GitHub does not show), on the line before a block:

- ``<!-- not run: REASON -->`` skips the block; REASON says in plain words what it needs (a GPU, the Hub, your own
  file, minutes of CPU), and the text around the block says it too.
- ``<!-- file: NAME -->`` before a non-bash block (JSON, YAML, Python) writes it to NAME, for the blocks after it.

The blocks of one file run in one folder, where ``tests``, ``examples`` and ``benchmarks`` link to the repository's,
with the environment's ``cpo`` and ``python`` first on PATH, and ``MODEL`` set to a tiny model folder (2 layers,
hidden 64, the GPT-2 tokenizer of tests/assets): the "small settings" of the docs' ``$MODEL``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT, load_tokenizer, save_tiny_model

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*(not run|file):\s*(.*?)\s*-->$")
LINKED = ("tests", "examples", "benchmarks")


@dataclass
class Block:
    lang: str
    text: str
    line: int  # 1-based line of the opening fence
    skip: str | None = None  # the reason it is not run
    file: str | None = None  # where it is written


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file with the directive on the line before each (blank lines allowed)."""
    out, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        directive = DIRECTIVE.match(before)
        block = Block(opening.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 1)
        if directive and directive.group(1) == "not run":
            block.skip = directive.group(2)
        elif directive:
            block.file = directive.group(2)
        out.append(block)
        i = end + 1
    return out


def test_directives_are_well_formed():
    for path in DOCS:
        for block in blocks(path):
            where = f"{path.name}:{block.line}"
            if block.skip is not None:
                assert len(block.skip) >= 10, f"{where}: say in words why the block is not run"
            if block.file is not None:
                assert block.lang not in ("bash", "sh") and "/" not in block.file, where


def test_no_user_facing_text_points_outside_the_repository():
    """A user's clone has no ../shared: neither the docs, the examples nor any `--help` may send them there."""
    texts = {p: p.read_text(encoding="utf-8") for p in DOCS}
    texts.update({p: p.read_text(encoding="utf-8") for p in (ROOT / "examples").rglob("*") if p.is_file()})
    for command in ("", "train", "generate", "prefs", "eval", "plot", "demo"):
        done = subprocess.run([sys.executable, "-m", "cpo", *([command] if command else []), "--help"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        texts[f"cpo {command} --help"] = done.stdout
    offenders = [str(where) for where, text in texts.items() if "../shared" in text or "shared/data" in text]
    assert not offenders, offenders


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("docs-model")
    return save_tiny_model(cache / "tiny", load_tokenizer("gpt2", cache))


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_doc_commands_run(doc, tiny_model_dir, tmp_path):
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "MODEL": str(tiny_model_dir), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for block in blocks(doc):
        if block.file is not None:
            (tmp_path / block.file).write_text(block.text, encoding="utf-8")
        elif block.lang in ("bash", "sh") and block.skip is None:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, (f"{doc.name}:{block.line} failed ({done.returncode}):\n{block.text}\n"
                                          f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
