"""The model card: written to output_dir/README.md on save_model, with the method, base model, data, versions,
final metrics and the papers to cite; its YAML header (huggingface_hub's ModelCardData) names only Hub ids."""

import importlib.metadata

import pytest
import yaml
from helpers import tiny_qwen2, train_args, zen
from huggingface_hub import ModelCard

from cpo import CPOConfig, CPOTrainer
from cpo.card import bibtex, final_metrics, model_card
from cpo.loss_settings import LossSettings, papers_for


def header(card: str) -> dict:
    """The card's YAML header, parsed as the Hub parses it."""
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("\n---\n", 1)[0][4:])


def test_papers_by_loss_type():
    def cites(**settings):
        return papers_for(LossSettings(**settings))

    assert cites(loss_type="sigmoid") == ["cpo"]
    assert cites(loss_type="simpo", alpha=0.25) == ["cpo", "simpo", "alphapo"]
    assert cites(loss_type="ipo") == ["cpo", "ipo"] and cites(loss_type="hinge") == ["cpo", "slic"]
    assert cites(arpo=True) == ["cpo", "arpo"]
    assert "eprint = {2401.08417}" in bibtex("cpo") and "Haoran Xu" in bibtex("cpo")
    assert "eprint = {2410.03115}" in bibtex("arpo") and "X-ALMA" in bibtex("arpo")


def test_final_metrics_take_the_last_train_and_eval_entries():
    history = [{"loss": 2.0, "rewards/margins": 0.1, "epoch": 0.5}, {"eval_loss": 1.5, "epoch": 0.5},
               {"loss": 1.0, "rewards/margins": 0.3, "epoch": 1.0}, {"train_runtime": 3.0}]
    assert final_metrics(history) == {"loss": 1.0, "rewards/margins": 0.3, "eval_loss": 1.5}


@pytest.mark.parametrize("loss_type, alpha, papers", [("sigmoid", 0.0, ["Contrastive Preference Optimization"]),
                                                      ("simpo", 0.25, ["Contrastive Preference", "SimPO", "AlphaPO"])])
def test_save_model_writes_the_card(tmp_path, tok, loss_type, alpha, papers):
    base = tmp_path / "base-model"
    tiny_qwen2(len(tok)).save_pretrained(base)
    args = train_args(tmp_path / "run", loss_type=loss_type, alpha=alpha, beta=0.3)
    trainer = CPOTrainer(model=str(base), args=args, processing_class=tok, train_dataset=zen("standard_preference"))
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    card = (tmp_path / "final" / "README.md").read_text(encoding="utf-8")
    meta = header(card)
    assert meta["library_name"] == "transformers" and meta["tags"] == ["cpo", "preference-optimization", loss_type]
    assert "base_model" not in meta and "datasets" not in meta  # a local folder and local data: no Hub ids
    assert str(tmp_path) not in card and "Trained from a local model folder with cpo" in card
    assert f"| `loss_type` | {loss_type} |" in card and "| `beta` | 0.3 |" in card
    assert f"| `alpha` | {alpha:.4g} |" in card and "| `cpo_alpha` | 1 |" in card and "| `simpo_gamma` | 0.5 |" in card
    assert "- local data (json, 17 rows)" in card
    last = [h for h in trainer.state.log_history if "loss" in h][-1]
    assert f"| `loss` | {last['loss']:.4g} |" in card and "| `rewards/accuracies` |" in card
    for name in ("cpo", "transformers", "torch"):
        assert f"- {name} {importlib.metadata.version(name)}" in card
    assert all(p in card for p in papers) and ("AlphaPO" in card) == (alpha != 0)
    trainer.create_model_card(dataset_name="org/prefs", output_dir=str(tmp_path / "final"))
    card = (tmp_path / "final" / "README.md").read_text(encoding="utf-8")
    assert header(card)["datasets"] == ["org/prefs"]
    assert "[org/prefs](https://huggingface.co/datasets/org/prefs)" in card


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return CPOConfig(output_dir=str(tmp_path_factory.mktemp("card")), report_to="none", use_cpu=True)


def test_header_names_hub_ids(cfg):
    card = model_card(cfg, model_name="my-model", base_model="Qwen/Qwen2-0.5B-Instruct",
                      datasets=["trl-lib/ultrafeedback_binarized", "local data (json, 17 rows)"], log_history=[])
    meta = header(card)
    assert meta["base_model"] == "Qwen/Qwen2-0.5B-Instruct" and meta["datasets"] == ["trl-lib/ultrafeedback_binarized"]
    assert ModelCard(card).data.base_model == "Qwen/Qwen2-0.5B-Instruct"  # huggingface_hub reads it back
    assert "Trained from [Qwen/Qwen2-0.5B-Instruct](https://huggingface.co/Qwen/Qwen2-0.5B-Instruct)" in card
    assert "- local data (json, 17 rows)" in card


def test_local_sources_are_described_without_their_paths(cfg, tmp_path):
    """Paths that hold ': ' (which would break hand-written YAML) and look like org/name: none reaches the header,
    none is printed; the text says what each source is."""
    base = tmp_path / "models: v1" / "base"
    base.mkdir(parents=True)
    data = tmp_path / "data: v2.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    card = model_card(cfg, model_name="run: 1", base_model=str(base), datasets=[str(data), "org/missing.jsonl"],
                      log_history=[])
    meta = header(card)
    assert "base_model" not in meta and "datasets" not in meta and meta["model_name"] == "run: 1"
    assert str(tmp_path) not in card and "models: v1" not in card and "data: v2" not in card
    assert "Trained from a local model folder" in card
    assert card.count("- a local jsonl file") == 2
