"""The model card ``CPOTrainer.save_model`` writes to ``output_dir/README.md``: method, base model, data, versions,
final metrics and the papers to cite, instead of ``transformers.Trainer``'s generic card. Its header is
``huggingface_hub``'s ``ModelCardData``; only Hub ids go into it, and local sources are described without their
paths."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

from .loss_settings import PAPERS, LossSettings, loss_setting_names, papers_for

# the run's settings in the card's method table: every loss setting (cpo.losses.LossSettings), then these
TRAINING_FIELDS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                   "gradient_accumulation_steps", "max_length", "max_completion_length")
PACKAGES = ("cpo", "transformers", "torch", "datasets", "accelerate", "peft")


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


# a name with one of these endings is a file, not a Hub repository
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt", ".tsv", ".gguf", ".safetensors", ".bin")


def hub_id(name: str | None) -> bool:
    """Whether ``name`` is a Hugging Face Hub repository id (``org/name``) rather than a local source: one slash,
    characters the Hub allows, no file ending, and nothing of that name on disk."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not name or name.count("/") != 1 or Path(name).suffix.lower() in FILE_SUFFIXES or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def describe(name: str, kind: str) -> str:
    """How the card's text names a model or dataset (``kind``): a Hub id as a link; a local source by what it is,
    never by its path (a path can name a user or a private folder, and means nothing on the Hub)."""
    if hub_id(name):
        return f"[{name}](https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{name})"
    p = Path(name)
    if p.is_dir():
        return f"a local {kind} folder"
    if p.suffix.lower() in FILE_SUFFIXES:
        return f"a local {p.suffix.lstrip('.').lower()} file"
    if "/" in name or "\\" in name or p.exists():
        return f"a local {kind}"
    return name  # a plain name or a description, e.g. dataset_names' "local data (json, 17 rows)"


def model_card(args, *, model_name: str, base_model: str | None, datasets: Sequence[str],
               log_history: Sequence[dict]) -> str:
    """The card's markdown: a YAML header built by ``huggingface_hub.ModelCardData`` (``base_model`` and
    ``datasets`` only for Hub ids), then the method, data, final metrics, versions and papers to cite."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", model_name=model_name,
                         base_model=base_model if hub_id(base_model) else None,
                         datasets=[d for d in datasets if hub_id(d)] or None,
                         tags=["cpo", "preference-optimization", args.loss_type])
    loss = "CPO-SimPO" if args.loss_type == "simpo" and args.cpo_alpha > 0 else args.loss_type
    base = describe(base_model, "model") if base_model else "a model given in memory"
    extras = [f"the AlphaPO reward (alpha={args.alpha:g})"] * bool(args.alpha) + [
        f"ARPO's adaptive rejection (X-ALMA; c1={args.arpo_c1:g}, c2={args.arpo_c2:g})"] * bool(args.arpo)
    lines = [f"# {model_name}", "",
             f"Trained from {base} with cpo, Contrastive Preference Optimization (arXiv 2401.08417), loss `{loss}`"
             f"{' with ' + ' and '.join(extras) if extras else ''}.", "",
             "## Method", "", "| setting | value |", "|---|---|"]
    lines += [f"| `{name}` | {_fmt(getattr(args, name))} |" for name in (*loss_setting_names(), *TRAINING_FIELDS)]
    lines += ["", "## Data", ""] + ([f"- {describe(d, 'dataset')}" for d in datasets] or ["- not recorded"])
    metrics = final_metrics(log_history)
    lines += ["", "## Final metrics", ""]
    lines += ["| metric | value |", "|---|---|", *(f"| `{k}` | {_fmt(v)} |" for k, v in sorted(metrics.items()))] \
        if metrics else ["No metrics were logged."]
    lines += ["", "## Versions", "", *(f"- {k} {v}" for k, v in versions().items()), "", "## Citations", ""]
    lines += ["```bibtex", "\n\n".join(bibtex(k) for k in papers_for(LossSettings.of(args))), "```", ""]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def write_card(output_dir: str, args, *, model_name: str | None, base_model: str | None, datasets: Sequence[str],
               log_history: Sequence[dict]) -> Path:
    """Write :func:`model_card` to ``output_dir/README.md`` (the model is named after the folder by default)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = model_card(args, model_name=model_name or out.resolve().name, base_model=base_model, datasets=datasets,
                      log_history=log_history)
    from .files import atomic_write

    with atomic_write(out / "README.md") as f:
        f.write(text)
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
