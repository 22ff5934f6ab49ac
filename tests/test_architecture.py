"""The layout's import direction, read from the source with ``ast`` (imports inside functions included):

    library (cpo/*.py)  <-  cpo.mt  <-  cpo.demo  <-  cpo.cli

The library imports none of the three tools; ``cpo.mt`` imports only the library; ``cpo.demo`` the library and
``cpo.mt``; ``cpo.cli`` anything. The pure maths (losses, log-probs, chunked head) imports only torch and itself.
``cpo/__main__.py`` is exempt: it is the ``python -m cpo`` alias of the command, which no module imports.
"""

import ast
from pathlib import Path

import pytest
from helpers import ROOT

SRC = ROOT / "src"
TOOLS = ("cpo.mt", "cpo.cli", "cpo.demo")
ALLOWED = {"library": (), "cpo.mt": (), "cpo.demo": ("cpo.mt",), "cpo.cli": TOOLS}
PURE = ("cpo.losses", "cpo.loss_settings", "cpo.logprobs", "cpo.chunked")


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, src: Path = SRC) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file, relative ones resolved."""
    name = module_name(path, src)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module
            else:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            # `from . import demo` imports the submodule cpo.demo
            out += [(node.lineno, f"{base}.{alias.name}") if node.module is None else (node.lineno, base)
                    for alias in node.names]
    return out


def layer(module: str) -> str:
    return next((tool for tool in TOOLS if module == tool or module.startswith(tool + ".")), "library")


def violations(src: Path = SRC) -> list[str]:
    """Every import that goes against the direction, as ``file:line: a imports b (rule)``."""
    found = []
    for path in sorted((src / "cpo").rglob("*.py")):
        name = module_name(path, src)
        if name == "cpo.__main__":
            continue
        mine = layer(name)
        for line, target in imports(path, src):
            if not (target == "cpo" or target.startswith("cpo.")):
                if name in PURE and target.split(".")[0] not in ("torch", "__future__", "math", "dataclasses",
                                                                   "collections"):
                    found.append(f"{path.relative_to(src)}:{line}: {name} imports {target} (pure maths: torch only)")
                continue
            theirs = layer(target)
            if theirs != "library" and theirs != mine and theirs not in ALLOWED[mine]:
                found.append(f"{path.relative_to(src)}:{line}: {name} ({mine}) imports {target} ({theirs})")
            if name in PURE and target not in PURE:
                found.append(f"{path.relative_to(src)}:{line}: {name} imports {target} (pure maths: torch only)")
    return found


def test_imports_flow_from_the_tools_to_the_library():
    assert violations() == []


def test_the_check_catches_a_violation(tmp_path):
    """A copy of the source with one library module importing the command line is reported, with the line."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(SRC / "cpo", copy / "cpo", ignore=shutil.ignore_patterns("__pycache__"))
    losses = copy / "cpo" / "losses.py"
    losses.write_text(losses.read_text(encoding="utf-8") + "\n\ndef _f():\n    from .cli import main\n")
    trainer = copy / "cpo" / "trainer.py"
    trainer.write_text(trainer.read_text(encoding="utf-8") + "\nfrom cpo.demo.task import Pair\n")
    found = [v.split(": ", 1)[1] for v in violations(copy)]
    assert "cpo.losses (library) imports cpo.cli (cpo.cli)" in found
    assert "cpo.losses imports cpo.cli (pure maths: torch only)" in found
    assert "cpo.trainer (library) imports cpo.demo.task (cpo.demo)" in found


@pytest.mark.parametrize("module", ["cpo.mt.pairs", "cpo.demo.pipeline", "cpo.cli.eval"])
def test_tools_import_the_library(module):
    """The resolver sees the tools' relative imports of the library (so an empty result above means something)."""
    path = SRC / (module.replace(".", "/") + ".py")
    assert any(layer(target) == "library" and target.startswith("cpo.") for _, target in imports(path))


def test_every_module_imports():
    """Every module of the package imports, each in turn in one fresh process (PYTHONPATH is this checkout's src)."""
    import subprocess
    import sys

    modules = [module_name(p) for p in sorted((SRC / "cpo").rglob("*.py")) if p.name != "__main__.py"]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    done = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(modules) > 40 and "cpo.path_attention" in modules and "cpo.routes" in modules


def test_no_two_test_modules_share_a_name():
    """pytest imports test modules by file name (tests/ has no packages): two of one name stop the whole collection."""
    tests = Path(__file__).resolve().parent
    names = sorted(p.name for p in tests.rglob("test_*.py") if "assets" not in p.parts)
    assert len(names) > 50 and not {n for n in names if names.count(n) > 1}, [n for n in names if names.count(n) > 1]
