"""One run, one ``output_dir``: what a training run leaves there, the refusal to mix two runs in one folder, and the
resume check (the cpo settings saved in every checkpoint, compared with the resuming run's).

A run writes checkpoints (``checkpoint-N/``), the final model and tokenizer, ``README.md`` (the card),
``trainer_state.json``, ``cpo_train_config.yaml``, ``training_curves.png`` and ``eval_generations.jsonl``. A new run
refuses a folder that holds another run's files, unless it resumes that run or ``overwrite_output_dir`` clears
them first. Each checkpoint holds :data:`SETTINGS_FILE`: the settings that define the objective (the loss settings,
``max_length``, ``max_completion_length``) and the training data (its name and size). A resumed run whose settings
differ is refused, unless ``resume_anyway``, which logs the differences.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from .errors import UsageError
from .files import atomic_write
from .loss_settings import LossSettings

logger = logging.getLogger("cpo")

SETTINGS_FILE = "cpo_run_settings.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# What shows that a folder holds a run: a checkpoint, a saved model, or one of the files a run writes.
RUN_MARKERS = ("config.json", "adapter_config.json", "model.safetensors", "model.safetensors.index.json",
               "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin", "trainer_state.json",
               "cpo_train_config.yaml", "eval_generations.jsonl", "training_curves.png", SETTINGS_FILE)
# Also cleared by overwrite_output_dir: what a run writes beside its markers (the card, the tokenizer, ...).
RUN_FILES = (*RUN_MARKERS, "README.md", "generation_config.json", "training_args.bin", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
             "chat_template.jinja", "tokenizer.model")
_SHARD = re.compile(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")


def run_entries(output_dir: str | Path) -> list[str]:
    """The names in ``output_dir`` that show a run was there (checkpoints, a model, a run's files), sorted."""
    p = Path(output_dir)
    if not p.is_dir():
        return []
    return sorted(x.name for x in p.iterdir() if x.name in RUN_MARKERS or _SHARD.match(x.name)
                  or (_CHECKPOINT.match(x.name) and x.is_dir()))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The ``checkpoint-N`` folder of ``output_dir`` with the highest N, or None."""
    p = Path(output_dir)
    found = [(int(m.group(1)), x) for x in p.iterdir() if (m := _CHECKPOINT.match(x.name)) and x.is_dir()] \
        if p.is_dir() else []
    return max(found)[1] if found else None


def resolve_resume(value: str | bool | None, output_dir: str | Path) -> Path | None:
    """The checkpoint a run resumes from: None (a new run) for None/False/"false"; the latest checkpoint of
    ``output_dir`` for True/"true"; else the folder ``value`` names.

    Raises:
        UsageError: "true" with no checkpoint in ``output_dir``, or a path that is not a folder.
    """
    value = str(value) if isinstance(value, Path) else value
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false")):
        return None
    if value is True or value.strip().lower() == "true":
        latest = latest_checkpoint(output_dir)
        if latest is None:
            raise UsageError(f"resume_from_checkpoint=true, but output_dir {str(output_dir)!r} holds no checkpoint-N "
                             "folder to resume from. Start a new run without it, or give a checkpoint's path.")
        return latest
    p = Path(value).expanduser()
    if not p.is_dir():
        raise UsageError(f"resume_from_checkpoint={value!r} is not a checkpoint folder. Give the path of a "
                         "checkpoint-N folder, or true for the latest one in output_dir.")
    return p


def prepare_output_dir(output_dir: str | Path, overwrite: bool, clear: bool = True) -> list[str]:
    """Make sure a new run does not mix its files with another run's: refuse a folder that holds a run, or, with
    ``overwrite``, clear that run's files (only when ``clear``: a check before a model loads deletes nothing).
    Returns the names that were (or, without ``clear``, would be) removed.

    Raises:
        UsageError: naming the folder, what it holds, and both ways on (resume, or overwrite_output_dir).
    """
    found = run_entries(output_dir)
    if not found:
        return []
    if not overwrite:
        shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
        raise UsageError(f"output_dir {str(output_dir)!r} already holds a run ({shown}). Resume it with "
                         "--resume_from_checkpoint true, or start over with --overwrite_output_dir (which deletes that "
                         "run's files), or choose another output_dir. Nothing was changed.")
    p = Path(output_dir)
    removed = sorted(x.name for x in p.iterdir() if x.name in RUN_FILES or _SHARD.match(x.name)
                     or (_CHECKPOINT.match(x.name) and x.is_dir()))
    if clear:
        for name in removed:
            target = p / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        logger.warning(f"overwrite_output_dir: removed the previous run's files from {p}: {', '.join(removed)}")
    return removed


def begin_run(args, resume_from_checkpoint, datasets: list[str], main_process: bool = True) -> Path | None:
    """Start a run in ``args.output_dir``: a new one refuses a folder that holds another run (the main process clears
    it with ``overwrite_output_dir``); a resumed one checks its checkpoint's settings (see :func:`check_resume`).
    Returns the checkpoint to resume from, or None."""
    checkpoint = resolve_resume(resume_from_checkpoint, args.output_dir)
    if checkpoint is None:
        prepare_output_dir(args.output_dir, args.overwrite_output_dir, clear=main_process)
    else:
        for diff in check_resume(checkpoint, run_settings(args, datasets), args.resume_anyway):
            logger.warning(f"resume_anyway: {checkpoint} differs from this run in {diff}")
    return checkpoint


def run_settings(args, datasets: list[str]) -> dict:
    """What a checkpoint records of its run: the loss settings, the token limits and the training data."""
    return {**asdict(LossSettings.of(args)), "max_length": args.max_length,
            "max_completion_length": args.max_completion_length, "datasets": list(datasets)}


def save_run_settings(checkpoint_dir: str | Path, settings: dict) -> Path:
    """Write ``settings`` to the checkpoint's :data:`SETTINGS_FILE` (atomically)."""
    path = Path(checkpoint_dir) / SETTINGS_FILE
    with atomic_write(path) as f:
        f.write(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return path


def check_resume(checkpoint: str | Path, settings: dict, anyway: bool) -> list[str]:
    """Compare the checkpoint's saved settings with this run's; returns the differences (``name: saved -> now``).

    Raises:
        UsageError: a difference, unless ``anyway`` (resume_anyway), naming each one.
    """
    path = Path(checkpoint) / SETTINGS_FILE
    if not path.is_file():
        logger.warning(f"{checkpoint} has no {SETTINGS_FILE} (an older or a plain transformers checkpoint): its loss "
                       "settings and data cannot be checked against this run's.")
        return []
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"Cannot read {str(path)!r}: {err}. Resume with --resume_anyway to skip the check.") from None
    diffs = [f"{k}: {saved.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(saved) | set(settings))
             if saved.get(k) != settings.get(k)]
    if diffs and not anyway:
        raise UsageError(f"The checkpoint {str(checkpoint)!r} was trained with other settings ({'; '.join(diffs)}): "
                         "resuming would change the objective mid-run. Use the same settings, or --resume_anyway.")
    return diffs
