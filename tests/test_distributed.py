"""Real multi-process runs on this CPU over gloo (DDP, and FSDP2, which the trainer runs where accelerate alone
would fall back to DDP), jobs killed with SIGKILL and resumed. Each run is a subprocess of tests/jobs/cpo_job.py."""

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from helpers import ROOT, tokenizer_dir
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

JOB = str(ROOT / "tests" / "jobs" / "cpo_job.py")
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
FSDP = [*ACCELERATE, "--config_file", str(ROOT / "examples" / "accelerate" / "fsdp.yaml")]
LAUNCH = [*ACCELERATE, "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


@functools.cache
def gpt2_dir() -> Path:
    """The GPT-2 tokenizer of tests/assets, unpacked once for the jobs of this module."""
    return tokenizer_dir("gpt2", Path(tempfile.mkdtemp(prefix="cpo-gpt2-")))


def job(out, *flags, launcher=(), expect=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [*launcher, *([] if launcher else [sys.executable]), JOB, "--out", str(out),
           "--tokenizer", str(gpt2_dir()), *flags]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == expect, res.stderr[-3000:]
    return res


def results(out):
    logs = [h for h in json.loads((out / "logs.json").read_text()) if "loss" in h]
    return logs, load_file(str(out / "final" / "model.safetensors")), json.loads((out / "setup.json").read_text())


@pytest.mark.parametrize("layout,chunked", [("padded", 1), ("packed", 1), ("shared", 1), ("both", 1), ("both", 0)])
def test_two_processes_equal_one_process_with_the_whole_batch(tmp_path, layout, chunked):
    """2 processes x 4 pairs == 1 process x 8 pairs: one SGD step, same loss, metrics and updated weights."""
    flags = ["--max_steps", "1", "--optim", "sgd", "--lr", "0.5", "--layout", layout, "--chunked", str(chunked)]
    job(tmp_path / "ddp", *flags, "--batch", "4", launcher=[*LAUNCH, "--multi_gpu"])
    job(tmp_path / "one", *flags, "--batch", "8")
    ddp, one = results(tmp_path / "ddp"), results(tmp_path / "one")
    assert ddp[2]["distributed_type"] == "DistributedType.MULTI_CPU" and ddp[2]["processes"] == 2
    assert ddp[2]["chunked"] == bool(chunked) and ddp[2]["packed"] == (layout in ("packed", "both"))
    assert len(ddp[0]) == 1  # logged once, by the main process
    for key, value in one[0][0].items():
        assert ddp[0][0][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for name, weight in one[1].items():
        torch.testing.assert_close(ddp[1][name], weight, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fsdp", [False, True], ids=["one-process", "fsdp2"])
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, fsdp):
    """Killed at step 3 (mid-epoch, after checkpoint-2), resumed from checkpoint-2: steps 3..6 and the final
    weights are those of a run that never stopped. Under FSDP2 the launcher reports its killed rank with exit 1."""
    launcher, killed, saved = (FSDP, 1, "pytorch_model_fsdp.bin") if fsdp else ((), -9, "model.safetensors")
    flags = ["--max_steps", "6", "--save_steps", "2", "--layout", "both", "--batch", "3"]
    job(tmp_path / "run", *flags, "--kill_at", "3", launcher=launcher, expect=killed)
    assert (tmp_path / "run" / "checkpoint-2" / saved).is_file() and not (tmp_path / "run" / "final").exists()
    job(tmp_path / "run", *flags, "--resume", launcher=launcher)
    job(tmp_path / "straight", *flags, launcher=launcher)
    resumed, straight = results(tmp_path / "run"), results(tmp_path / "straight")
    assert [h["step"] for h in resumed[0]] == [1, 2, 3, 4, 5, 6] and resumed[0][2]["epoch"] < 2
    for a, b in zip(resumed[0], straight[0]):
        for key in ("loss", "grad_norm", "nll_loss", "rewards/margins", "logps/chosen"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)
    for name, weight in straight[1].items():
        torch.testing.assert_close(resumed[1][name], weight, rtol=0, atol=1e-7)


@pytest.mark.parametrize("layout", ["padded", "both"])
def test_fsdp2_on_two_cpu_processes_equals_one_process(tmp_path, layout):
    """examples/accelerate/fsdp.yaml on this CPU: FSDP2 really shards (accelerate alone would run DDP), the chunked
    path reads the unsharded head the forward used, and one step equals 1 process x 8 pairs."""
    flags = ["--max_steps", "1", "--optim", "sgd", "--lr", "0.5", "--layout", layout]
    res = job(tmp_path / "fsdp", *flags, "--batch", "4", launcher=FSDP)
    job(tmp_path / "one", *flags, "--batch", "8")
    fsdp, one = results(tmp_path / "fsdp"), results(tmp_path / "one")
    assert fsdp[2] == {"distributed_type": "DistributedType.FSDP", "processes": 2, "fsdp": True, "chunked": True,
                       "packed": layout == "both", "shared": layout == "both", "sharded_head": True}
    assert "Chunked log-probs: off" not in res.stderr
    for key, value in one[0][0].items():
        assert fsdp[0][0][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert fsdp[1].keys() == one[1].keys()
    for name, weight in one[1].items():
        torch.testing.assert_close(fsdp[1][name], weight, rtol=1e-5, atol=1e-6)


def test_fsdp1_on_cpu_fails_saying_how_to_shard_on_cpu(tmp_path):
    """accelerate's FSDP1 needs a device per process; the error says to use FSDP2, which runs here."""
    config = tmp_path / "fsdp1.yaml"
    config.write_text((ROOT / "examples" / "accelerate" / "fsdp.yaml").read_text().replace("fsdp_version: 2",
                                                                                           "fsdp_version: 1"))
    res = job(tmp_path / "fsdp1", "--max_steps", "1", launcher=[*ACCELERATE, "--config_file", str(config)], expect=1)
    assert "FSDP1 needs a GPU-like device per process" in res.stderr and "fsdp_version: 2" in res.stderr
