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


def test_example_script_reads_a_trl_config_and_resumes(tmp_path, model_and_data):
    """--config recipe.yaml as TRL's scripts read it (env: set, flags win), and resume_from_checkpoint reaches
    trainer.train: the resumed run starts after step 1, so it saves checkpoint-2 and no checkpoint-1."""
    model, data = model_and_data
    script = str(ROOT / "examples" / "train_cpo.py")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({  # JSON is YAML
        "env": {"CPO_EXAMPLE_ENV": "set"}, "model_name_or_path": str(model), "dataset_name": str(data),
        "output_dir": str(tmp_path / "first"), "max_steps": 2, "logging_steps": 1, "per_device_train_batch_size": 4,
        "report_to": "none", "save_strategy": "steps", "save_steps": 1, "disable_tqdm": True, "use_peft": True,
        "use_dora": True, "lora_r": 4}))
    run([sys.executable, script, "--config", str(recipe), "--learning_rate", "1e-3"], tmp_path)
    first = tmp_path / "first"
    assert (first / "checkpoint-1").is_dir() and (first / "checkpoint-2").is_dir()
    assert json.loads((first / "adapter_config.json").read_text())["use_dora"] is True
    assert json.loads((first / "checkpoint-1" / "trainer_state.json").read_text())["global_step"] == 1
    second = tmp_path / "second"
    run([sys.executable, script, "--config", str(recipe), "--output_dir", str(second), "--resume_from_checkpoint",
         str(first / "checkpoint-1")], tmp_path)
    assert sorted(p.name for p in second.glob("checkpoint-*")) == ["checkpoint-2"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rte: 0.1\n")
    out = subprocess.run([sys.executable, script, "--config", str(bad)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "unknown key 'learning_rte'. Did you mean learning_rate" in out.stderr
