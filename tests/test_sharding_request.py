"""FSDP1 without an accelerator is refused from the configuration, whatever accelerate would have said."""

from types import SimpleNamespace

import pytest

from cpo import distributed
from cpo.distributed import check_sharding_request, fsdp_version


def args(plugin=None, use_cpu=False):
    return SimpleNamespace(fsdp_plugin_args=plugin, use_cpu=use_cpu)


@pytest.fixture(autouse=True)
def no_launch_env(monkeypatch):
    for name in ("ACCELERATE_USE_FSDP", "FSDP_VERSION"):
        monkeypatch.delenv(name, raising=False)


def test_version_from_training_arguments_then_from_the_launcher(monkeypatch):
    assert fsdp_version(args()) is None
    assert fsdp_version(args({"fsdp_version": 1})) == 1 and fsdp_version(args({})) == 2  # transformers' default
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert fsdp_version(args()) == 1  # accelerate's default when the launch config names no version
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert fsdp_version(args()) == 2 and fsdp_version(args({"fsdp_version": 1})) == 1


@pytest.mark.parametrize("source", ["arguments", "launcher"])
def test_fsdp1_without_an_accelerator_is_refused_saying_to_use_fsdp2(monkeypatch, source):
    monkeypatch.setattr(distributed, "has_accelerator", lambda a: False)
    if source == "launcher":
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
        monkeypatch.setenv("FSDP_VERSION", "1")
    request = args({"fsdp_version": 1} if source == "arguments" else None)
    with pytest.raises(RuntimeError, match=r"FSDP1 needs a GPU-like device.*fsdp_version: 2.*examples/accelerate"):
        check_sharding_request(request)


def test_fsdp2_no_fsdp_and_fsdp1_on_an_accelerator_pass(monkeypatch):
    monkeypatch.setattr(distributed, "has_accelerator", lambda a: False)
    check_sharding_request(args({"fsdp_version": 2}))
    check_sharding_request(args())
    monkeypatch.setattr(distributed, "has_accelerator", lambda a: True)
    check_sharding_request(args({"fsdp_version": 1}))


def test_use_cpu_means_no_accelerator():
    assert distributed.has_accelerator(args(use_cpu=True)) is False
