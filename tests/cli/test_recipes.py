"""TRL recipes run unchanged on `cpo train`: every field of TRL's ScriptArguments and ModelConfig, the YAML's env:,
PEFT variants that reach peft's config, the revision, streaming, bitsandbytes refused where it cannot run, the flags a
.gguf model cannot honour, and two processes under accelerate launch."""

import dataclasses
import json
import os
import subprocess
import sys
import types

import pytest
import torch
import yaml
from helpers import ROOT, preference_rows
from safetensors.torch import load_file
from tiny_gguf import write_tiny_llama

from cpo.cli import main
from cpo.cli.train import _valid_keys, build_parser, parse


def _trl_fields():
    from trl import ModelConfig, ScriptArguments

    return [f for cls in (ScriptArguments, ModelConfig) for f in dataclasses.fields(cls)]


def test_every_trl_script_and_model_field_is_a_key_with_trls_default(tmp_path):
    """A YAML holding every field of TRL 1.16's ScriptArguments and ModelConfig at TRL's defaults parses, and each
    value arrives as written. Our defaults are TRL's, except dtype (None: the checkpoint's dtype)."""
    valid = _valid_keys(build_parser())
    assert [f.name for f in _trl_fields() if f.name not in valid] == []
    script, model, _, _, _ = parse(["--output_dir", str(tmp_path)])
    ours = {**dataclasses.asdict(script), **dataclasses.asdict(model)}
    assert {f.name: f.default for f in _trl_fields() if ours[f.name] != f.default} == {"dtype": "float32"}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({f.name: f.default for f in _trl_fields()} | {"output_dir": str(tmp_path)}))
    script, model, _, sources, _ = parse(["--config", str(recipe)])
    ours = {**dataclasses.asdict(script), **dataclasses.asdict(model)}
    assert {f.name: ours[f.name] for f in _trl_fields()} == {f.name: f.default for f in _trl_fields()}
    assert sources["use_dora"] == "yaml"


def test_trl_recipe_trains_dora_rslora_and_modules_to_save(tiny, pairs, tmp_path, monkeypatch, capsys):
    """TRL's YAML keys, env: included, train a LoRA adapter whose adapter_config.json has DoRA, rsLoRA and
    modules_to_save; the saved weights hold DoRA's magnitudes and the trained copy of the saved module."""
    monkeypatch.delenv("CPO_RECIPE_TEST", raising=False)
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "env": {"CPO_RECIPE_TEST": 7}, "model_name_or_path": str(tiny), "model_revision": "main",
        "torch_dtype": "float32", "dataset_name": str(pairs), "dataset_streaming": False, "use_peft": True,
        "use_dora": True, "use_rslora": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"],
        "lora_modules_to_save": ["norm"], "output_dir": str(out), "max_steps": 2, "per_device_train_batch_size": 4,
        "learning_rate": 1e-2, "eval_strategy": "no", "max_length": 64, "logging_steps": 1}))
    assert main(["train", "--config", str(recipe)]) == 0
    assert os.environ["CPO_RECIPE_TEST"] == "7"
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["use_dora"], config["use_rslora"], config["r"], config["lora_alpha"]) == (True, True, 4, 8)
    assert config["modules_to_save"] == ["norm"] and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert sum("lora_magnitude_vector" in k for k in weights) == 4  # q_proj and v_proj of 2 layers
    norm = weights["base_model.model.model.norm.weight"]  # modules_to_save: the whole module, trained
    base = load_file(str(tiny / "model.safetensors"))["model.norm.weight"]
    assert norm.shape == base.shape and not torch.equal(norm, base)
    err = capsys.readouterr().err
    assert "CPO_RECIPE_TEST" not in yaml.safe_load((out / "cpo_train_config.yaml").read_text())
    assert "use_dora" in err and "dtype" in err


def test_model_revision_reaches_the_model_config_and_tokenizer(tiny, pairs, tmp_path, monkeypatch):
    """A Hub name with model_revision: from_pretrained of the config, the model and the tokenizer all get it."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    seen = []
    for cls in (AutoConfig, AutoModelForCausalLM, AutoTokenizer):
        real = cls.from_pretrained

        def fake(name, *args, _real=real, _cls=cls.__name__, **kwargs):
            seen.append((_cls, name, kwargs.get("revision")))
            return _real(str(tiny), *args, **{k: v for k, v in kwargs.items() if k != "revision"})

        monkeypatch.setattr(cls, "from_pretrained", fake)
    argv = ["train", "--model_name_or_path", "org/tiny", "--model_revision", "v1.0", "--dataset_name", str(pairs),
            "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--eval_strategy", "no", "--max_length", "64"]
    assert main(argv) == 0
    asked = sorted({s for s in seen if s[1] == "org/tiny"})  # transformers' own inner calls see the local folder
    assert asked == [("AutoConfig", "org/tiny", "v1.0"), ("AutoModelForCausalLM", "org/tiny", "v1.0"),
                     ("AutoTokenizer", "org/tiny", "v1.0")]


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_bitsandbytes_refused_before_loading_where_it_cannot_run(tiny, pairs, tmp_path, monkeypatch, capsys):
    """load_in_4bit / load_in_8bit: one line naming what is missing, exit 2, nothing written. bitsandbytes absent,
    too old, or without a device this machine has (faked here, so the test does not depend on what is installed)."""
    out = tmp_path / "out"
    base = ["train", "--model_name_or_path", str(tiny), "--dataset_name", str(pairs), "--output_dir", str(out),
            "--max_steps", "1", "--use_peft"]
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    err = _refused([*base, "--load_in_4bit"], capsys)
    assert "4-bit loading (load_in_4bit) needs bitsandbytes>=" in err and "which is not installed" in err
    assert "8-bit loading (load_in_8bit)" in _refused([*base, "--load_in_8bit"], capsys)
    fake = types.ModuleType("bitsandbytes")
    fake.__version__, fake.supported_torch_devices = "0.50.2", {"cuda", "xpu"}
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    err = _refused([*base, "--load_in_4bit"], capsys)
    assert "bitsandbytes 0.50.2 supports cuda, xpu, and this machine has cpu" in err
    fake.__version__ = "0.40.0"
    assert "0.40.0 is installed" in _refused([*base, "--load_in_4bit"], capsys)
    assert "add --use_peft" in _refused([*base[:-1], "--load_in_4bit"], capsys)
    assert "choose one" in _refused([*base, "--load_in_4bit", "--load_in_8bit"], capsys)
    assert not out.exists()


def test_quantization_config_as_trl_builds_it():
    from cpo.cli.arguments import ModelArguments, quantization_config_from

    q = quantization_config_from(ModelArguments(load_in_4bit=True, dtype="float32", bnb_4bit_quant_type="fp4",
                                                use_bnb_nested_quant=True, bnb_4bit_quant_storage="uint8"))
    assert (q.load_in_4bit, q.bnb_4bit_compute_dtype, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant,
            q.bnb_4bit_quant_storage) == (True, torch.float32, "fp4", True, torch.uint8)
    assert quantization_config_from(ModelArguments(load_in_8bit=True)).load_in_8bit
    assert quantization_config_from(ModelArguments()) is None


def test_gguf_model_applies_the_attention_and_refuses_what_it_cannot_honour(pairs, tmp_path, capsys):
    """A .gguf model takes dtype and attn_implementation; trust_remote_code, a Hub revision, 4-bit loading and other
    from_pretrained arguments are refused by name (exit 2, nothing written) instead of being dropped."""
    from cpo.gguf import gguf_load_options, load_gguf_model

    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path)
    for attn in ("eager", "sdpa"):
        assert load_gguf_model(path, attn_implementation=attn).config._attn_implementation == attn
    assert gguf_load_options({"dtype": torch.float16, "attn_implementation": "eager", "revision": "main",
                              "trust_remote_code": False}) == {"dtype": torch.float16, "attn_implementation": "eager"}
    capsys.readouterr()  # the loads' progress bars
    out = tmp_path / "out"
    base = ["train", "--model_name_or_path", str(path), "--dataset_name", str(pairs), "--output_dir", str(out),
            "--max_steps", "1"]
    cases = [
        (["--trust_remote_code"], "trust_remote_code=True (transformers builds a .gguf model from its own code"),
        (["--model_init_kwargs", '{"device_map": "cpu", "low_cpu_mem_usage": true}'],
         "device_map='cpu' (load_gguf_model takes only dtype and attn_implementation); low_cpu_mem_usage=True"),
        (["--model_revision", "v2"], "model_revision 'v2' names a Hub revision, but"),
        (["--use_peft", "--load_in_4bit"], "quantization_config (the weights are dequantised"),
    ]
    for flags, message in cases:
        assert message in _refused([*base, *flags], capsys), flags
    assert not out.exists()


def test_streaming_gives_an_iterable_dataset_sliced_by_counts(pairs, tmp_path, capsys):
    from datasets import IterableDataset

    from cpo.cli.loading import load_dataset_dict, select_split
    from cpo.errors import UsageError

    splits = load_dataset_dict(str(pairs), streaming=True)
    part = select_split(splits, "train[3:5]")
    assert isinstance(part, IterableDataset)
    assert [r["chosen"] for r in part] == [r["chosen"] for r in preference_rows(12)[3:5]]
    with pytest.raises(UsageError, match="streamed, so it has no length"):
        select_split(splits, "train[:50%]")
    argv = ["train", "--model_name_or_path", "x", "--dataset_name", str(pairs), "--output_dir", str(tmp_path / "o"),
            "--dataset_streaming"]
    assert "needs max_steps > 0" in _refused(argv, capsys)


def test_streamed_training_runs_max_steps(tiny, pairs, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["train", "--model_name_or_path", str(tiny), "--dataset_name", str(pairs), "--output_dir", str(out),
            "--dataset_streaming", "--max_steps", "2", "--per_device_train_batch_size", "4", "--eval_strategy",
            "steps", "--eval_steps", "2", "--dataset_train_split", "train[:8]", "--dataset_test_split", "train[8:]",
            "--max_length", "64", "--logging_steps", "1", "--ignore_bias_buffers"]
    assert main(argv) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and [e["step"] for e in state["log_history"] if "eval_loss" in e] == [2]
    assert "streamed training pairs" in capsys.readouterr().err


def test_ignore_bias_buffers_lists_the_bool_buffers_for_ddp():
    from cpo.cli.arguments import ignore_bool_buffers

    model = torch.nn.Linear(2, 2)
    model.register_buffer("causal_mask", torch.ones(2, 2, dtype=torch.bool))
    model.register_buffer("scale", torch.ones(2))
    assert ignore_bool_buffers(model) == ["causal_mask"]
    assert model._ddp_params_and_buffers_to_ignore == ["causal_mask"]


@pytest.mark.slow
def test_accelerate_launch_two_processes_prints_the_configuration_once(tiny, pairs, tmp_path):
    """`accelerate launch --num_processes 2 --multi_gpu -m cpo train` (gloo on this CPU) trains, and the one-time
    output (configuration, card, curves, config YAML) comes from the main process only."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
           "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "cpo", "train",
           "--model_name_or_path", str(tiny), "--dataset_name", str(pairs), "--output_dir", str(out), "--max_steps",
           "2", "--per_device_train_batch_size", "2", "--eval_strategy", "no", "--max_length", "64",
           "--logging_steps", "1", "--report_to", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("cpo train: configuration") == 1
    assert res.stderr.count("training pairs") == 1 and "x 2 processes" in res.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and (out / "README.md").is_file() and (out / "training_curves.png").is_file()
