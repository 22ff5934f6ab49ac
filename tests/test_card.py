"""The model card: written to output_dir/README.md on save_model, with the method, base model, data, versions,
final metrics and the papers to cite."""

import importlib.metadata

import pytest
from helpers import tiny_qwen2, train_args, zen

from cpo import CPOTrainer
from cpo.card import bibtex, final_metrics, papers_for


def test_papers_by_loss_type():
    assert papers_for("sigmoid", 0.0) == ["cpo"]
    assert papers_for("simpo", 0.25) == ["cpo", "simpo", "alphapo"]
    assert papers_for("ipo", 0.0) == ["cpo", "ipo"] and papers_for("hinge", 0.0) == ["cpo", "slic"]
    assert "eprint = {2401.08417}" in bibtex("cpo") and "Haoran Xu" in bibtex("cpo")


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
    assert card.startswith("---\nlibrary_name: transformers\n") and f"base_model: {base}" in card
    assert f"| `loss_type` | {loss_type} |" in card and "| `beta` | 0.3 |" in card
    assert f"| `alpha` | {alpha:.4g} |" in card and "| `cpo_alpha` | 1 |" in card and "| `simpo_gamma` | 0.5 |" in card
    assert "- local data (json, 17 rows)" in card
    last = [h for h in trainer.state.log_history if "loss" in h][-1]
    assert f"| `loss` | {last['loss']:.4g} |" in card and "| `rewards/accuracies` |" in card
    for name in ("cpo", "transformers", "torch"):
        assert f"- {name} {importlib.metadata.version(name)}" in card
    assert all(p in card for p in papers) and ("AlphaPO" in card) == (alpha != 0)
    trainer.create_model_card(dataset_name="org/prefs", output_dir=str(tmp_path / "final"))
    assert "datasets:\n- org/prefs\n" in (tmp_path / "final" / "README.md").read_text(encoding="utf-8")
