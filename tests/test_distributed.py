"""Real multi-process runs (DDP over gloo on this CPU), a job killed with SIGKILL and resumed, and what happens
when FSDP is asked for on a CPU-only machine. Each run is a subprocess of tests/jobs/cpo_job.py."""

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, shared
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

JOB = str(ROOT / "tests" / "jobs" / "cpo_job.py")
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
LAUNCH = [*ACCELERATE, "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def job(out, *flags, launcher=(), expect=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [*launcher, *([] if launcher else [sys.executable]), JOB, "--out", str(out),
           "--tokenizer", str(shared("tokenizers", "gpt2")), *flags]
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


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    """Killed at step 3 (mid-epoch, after checkpoint-2), resumed from checkpoint-2: steps 3..6 and the final
    weights are those of a run that never stopped."""
    flags = ["--max_steps", "6", "--save_steps", "2", "--layout", "both", "--batch", "3"]
    job(tmp_path / "run", *flags, "--kill_at", "3", expect=-9)
    assert (tmp_path / "run" / "checkpoint-2").is_dir() and not (tmp_path / "run" / "final").exists()
    job(tmp_path / "run", *flags, "--resume")
    job(tmp_path / "straight", *flags)
    resumed, straight = results(tmp_path / "run"), results(tmp_path / "straight")
    assert [h["step"] for h in resumed[0]] == [1, 2, 3, 4, 5, 6] and resumed[0][2]["epoch"] < 2
    for a, b in zip(resumed[0], straight[0]):
        for key in ("loss", "grad_norm", "nll_loss", "rewards/margins", "logps/chosen"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)
    for name, weight in straight[1].items():
        torch.testing.assert_close(resumed[1][name], weight, rtol=0, atol=1e-7)


def test_fsdp_on_cpu_is_reported_as_the_ddp_run_it_becomes(tmp_path):
    """accelerate 1.15 enables FSDP only on GPU-like devices; on CPU it runs DDP, and the trainer says so."""
    res = job(tmp_path / "fsdp", "--max_steps", "1", "--batch", "4",
              launcher=[*ACCELERATE, "--config_file", str(ROOT / "examples" / "accelerate" / "fsdp.yaml")])
    setup = json.loads((tmp_path / "fsdp" / "setup.json").read_text())
    assert setup["distributed_type"] == "DistributedType.MULTI_CPU" and not setup["fsdp"]
    assert "FSDP was requested, but accelerate enables it only on GPU-like devices" in res.stderr
