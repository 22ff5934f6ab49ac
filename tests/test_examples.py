"""examples/train_cpo.py runs as a user runs it: with python and with accelerate launch, on a local model folder and
a local data file."""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, tiny_qwen2, zen

pytestmark = pytest.mark.slow


@pytest.fixture
def model_and_data(tmp_path, tok):
    tiny_qwen2(len(tok)).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in zen("standard_preference")))
    return tmp_path / "model", data


def run(cmd, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


FLAGS = ["--max_steps", "2", "--logging_steps", "1", "--per_device_train_batch_size", "4", "--learning_rate", "1e-4",
         "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"]


@pytest.mark.parametrize("launcher", ["python", "accelerate"])
def test_example_script_trains_and_saves(tmp_path, model_and_data, launcher):
    model, data = model_and_data
    out = tmp_path / f"out-{launcher}"
    script = str(ROOT / "examples" / "train_cpo.py")
    args = ["--model_name_or_path", str(model), "--dataset_name", str(data), "--output_dir", str(out), *FLAGS]
    if launcher == "python":
        cmd = [sys.executable, script, *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", script, *args]
    run(cmd, tmp_path)
    assert (out / "model.safetensors").exists() and (out / "tokenizer_config.json").exists()
