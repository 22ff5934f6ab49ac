"""The model card ``CPOTrainer.save_model`` writes to ``output_dir/README.md``: method, base model, data, versions,
final metrics and the papers to cite, instead of ``transformers.Trainer``'s generic card."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

# the papers behind each loss type (arXiv id, title, authors, venue, year)
PAPERS = {
    "cpo": ("2401.08417", "Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance in Machine "
            "Translation", "Haoran Xu and Amr Sharaf and Yunmo Chen and Weiting Tan and Lingfeng Shen and Benjamin "
            "Van Durme and Kenton Murray and Young Jin Kim", "ICML", 2024),
    "simpo": ("2405.14734", "SimPO: Simple Preference Optimization with a Reference-Free Reward",
              "Yu Meng and Mengzhou Xia and Danqi Chen", "NeurIPS", 2024),
    "alphapo": ("2501.03884", "AlphaPO: Reward Shape Matters for LLM Alignment", "Aman Gupta and others", "ICML",
                2025),
    "ipo": ("2310.12036", "A General Theoretical Paradigm to Understand Learning from Human Preferences",
            "Mohammad Gheshlaghi Azar and others", "AISTATS", 2024),
    "slic": ("2305.10425", "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", "Yao Zhao and others",
             "arXiv", 2023),
}
METHOD_FIELDS = ("loss_type", "beta", "cpo_alpha", "simpo_gamma", "alpha", "label_smoothing", "learning_rate",
                 "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "max_length", "max_completion_length")
PACKAGES = ("cpo", "transformers", "torch", "datasets", "accelerate", "peft")


def papers_for(loss_type: str, alpha: float) -> list[str]:
    """The keys of :data:`PAPERS` a run with ``loss_type`` and ``alpha`` should cite: CPO always."""
    keys = ["cpo"]
    keys += {"simpo": ["simpo"], "ipo": ["ipo"], "hinge": ["slic"]}.get(loss_type, [])
    return keys + (["alphapo"] if alpha != 0 else [])


def bibtex(key: str) -> str:
    arxiv, title, authors, venue, year = PAPERS[key]
    return (f"@inproceedings{{{key}{year},\n  title = {{{title}}},\n  author = {{{authors}}},\n"
            f"  booktitle = {{{venue}}},\n  year = {{{year}}},\n  eprint = {{{arxiv}}},\n  archivePrefix = {{arXiv}}\n}}")


def versions() -> dict[str, str]:
    """The installed versions of cpo and the libraries it trains with (absent ones left out)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def final_metrics(log_history: Sequence[dict]) -> dict[str, float]:
    """The last logged training metrics (the entry with ``loss``) and the last evaluation's (``eval_*``)."""
    out = {}
    for entry in log_history:
        if "loss" in entry:
            out.update({k: v for k, v in entry.items() if k != "epoch"})
        elif any(k.startswith("eval_") for k in entry):
            out.update({k: v for k, v in entry.items() if k.startswith("eval_")})
    return out


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def model_card(args, *, model_name: str, base_model: str | None, datasets: Sequence[str],
               log_history: Sequence[dict]) -> str:
    """The card's markdown, with a YAML header the Hugging Face Hub reads (base model, datasets, tags)."""
    header = ["---", "library_name: transformers", "tags:", "- cpo", "- preference-optimization", f"- {args.loss_type}"]
    if base_model:
        header.append(f"base_model: {base_model}")
    if datasets:
        header += ["datasets:", *(f"- {d}" for d in datasets)]
    header.append("---")
    loss = "CPO-SimPO" if args.loss_type == "simpo" and args.cpo_alpha > 0 else args.loss_type
    lines = [f"# {model_name}", "",
             f"Trained from `{base_model or 'a model given in memory'}` with cpo, "
             f"Contrastive Preference Optimization (arXiv 2401.08417), loss `{loss}`"
             f"{f' with the AlphaPO reward (alpha={args.alpha:g})' if args.alpha else ''}.", "",
             "## Method", "", "| setting | value |", "|---|---|"]
    lines += [f"| `{name}` | {_fmt(getattr(args, name))} |" for name in METHOD_FIELDS]
    lines += ["", "## Data", ""] + ([f"- {d}" for d in datasets] or ["- not recorded"])
    metrics = final_metrics(log_history)
    lines += ["", "## Final metrics", ""]
    lines += ["| metric | value |", "|---|---|", *(f"| `{k}` | {_fmt(v)} |" for k, v in sorted(metrics.items()))] \
        if metrics else ["No metrics were logged."]
    lines += ["", "## Versions", "", *(f"- {k} {v}" for k, v in versions().items()), "", "## Citations", ""]
    lines += ["```bibtex", "\n\n".join(bibtex(k) for k in papers_for(args.loss_type, args.alpha)), "```", ""]
    return "\n".join(header + lines)


def write_card(output_dir: str, args, *, model_name: str | None, base_model: str | None, datasets: Sequence[str],
               log_history: Sequence[dict]) -> Path:
    """Write :func:`model_card` to ``output_dir/README.md`` (the model is named after the folder by default)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = model_card(args, model_name=model_name or out.resolve().name, base_model=base_model, datasets=datasets,
                      log_history=log_history)
    (out / "README.md").write_text(text, encoding="utf-8")
    return out / "README.md"


def dataset_names(dataset) -> list[str]:
    """How a (raw, untokenized) dataset names itself: its Hub name, or its builder and size for local files."""
    if dataset is None:
        return []
    if isinstance(dataset, dict):
        return [n for d in dataset.values() for n in dataset_names(d)]
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None)
    local = name in (None, "json", "csv", "parquet", "arrow", "text", "generator", "pandas")
    size = f", {len(dataset)} rows" if hasattr(dataset, "__len__") else ""
    return [f"local data ({name or 'in memory'}{size})" if local else name]
