"""Load what the `cpo` subcommands are given: a dataset split, a model and its tokenizer, with clear errors.

- Datasets: a Hub name, a local folder (data files, or one saved with ``save_to_disk``), or a local ``.json``,
  ``.jsonl``, ``.csv`` or ``.parquet`` file. A split may be sliced: ``train[:1800]``, ``train[90%:]``.
- Models: a Hub name, a local folder, a PEFT adapter folder, or a ``.gguf`` file (dequantised by :mod:`cpo.gguf`
  into a trainable model).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..errors import UsageError

logger = logging.getLogger("cpo")

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst")
_SPLIT = re.compile(r"^(?P<name>[\w.-]+)(?:\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or Path(name).suffix.lower() in (
        *FILE_BUILDERS, *_COMPRESSION, ".gguf", ".txt", ".tsv")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _file_builder(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    builder = FILE_BUILDERS.get(suffixes[-1] if suffixes else "")
    if builder is None:
        raise UsageError(f"Cannot read the dataset file {str(path)!r}: its type is not one of "
                         f"{', '.join(FILE_BUILDERS)}. Convert it, or give a folder or a Hub dataset name.")
    return builder


def load_dataset_dict(name: str, config: str | None = None):
    """All splits of a dataset as a ``DatasetDict`` (a local file becomes its ``train`` split)."""
    import datasets

    p = Path(name).expanduser()
    try:
        if p.is_file():
            builder = _file_builder(p)
            if p.stat().st_size == 0:
                raise UsageError(f"The dataset file {name!r} is empty: it needs one preference pair per row.")
            return datasets.load_dataset(builder, data_files={"train": str(p)})
        if p.is_dir():
            if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
                loaded = datasets.load_from_disk(str(p))
                return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)
            return datasets.load_dataset(str(p), config)
    except UsageError:
        raise
    except Exception as err:  # datasets raises many kinds; the user needs the file and the reason
        raise UsageError(f"Cannot read the dataset {name!r}: {_first_line(err)}") from err
    if _looks_like_path(name):
        raise UsageError(f"The dataset {name!r} does not exist. Give a .json/.jsonl/.csv/.parquet file, a folder, or "
                         "a Hugging Face Hub dataset name.")
    try:
        return datasets.load_dataset(name, config)
    except Exception as err:
        raise UsageError(f"Cannot load the dataset {name!r} from the Hugging Face Hub ({_first_line(err)}). For "
                         "local data give a path to a .json/.jsonl/.csv/.parquet file or a folder.") from err


def _bound(text: str | None, n: int, default: int) -> int:
    if text is None:
        return default
    if text.endswith("%"):
        return round(n * int(text[:-1]) / 100)
    return int(text)


def select_split(splits, spec: str, source: str = "the dataset"):
    """The split named by ``spec`` (``"test"``, or sliced like Python: ``"train[:1800]"``, ``"train[90%:]"``).

    Raises:
        UsageError: a malformed spec, or a split the dataset does not have (listing those it has).
    """
    m = _SPLIT.match(spec.strip())
    if m is None:
        raise UsageError(f"Cannot read the split {spec!r}. Write a split name, optionally sliced: test, "
                         "train[:1800], train[1800:], train[:90%].")
    name = m.group("name")
    if name not in splits:
        raise UsageError(f"{source} has no split {name!r}; it has: {', '.join(splits)}. A single local file is the "
                         "'train' split: take a slice for evaluation, e.g. --dataset_test_split 'train[1800:]'.")
    ds = splits[name]
    if len(ds) == 0:
        raise UsageError(f"The split {name!r} of {source} has no rows.")
    if m.group("start") is None and m.group("stop") is None:
        return ds
    n = len(ds)
    start, stop, _ = slice(_bound(m.group("start"), n, 0), _bound(m.group("stop"), n, n)).indices(n)
    if stop <= start:
        raise UsageError(f"The split {spec!r} of {source} is empty ({name} has {n} rows).")
    return ds.select(range(start, stop))


def load_dataset_split(name: str, config: str | None, split: str):
    """One (possibly sliced) split of a dataset; see :func:`load_dataset_dict` and :func:`select_split`."""
    return select_split(load_dataset_dict(name, config), split, f"The dataset {name!r}")


def _check_model_path(name: str) -> Path | None:
    p = Path(name).expanduser()
    if p.exists():
        if p.is_dir() and not any((p / f).is_file() for f in ("config.json", "adapter_config.json")):
            files = ", ".join(sorted(x.name for x in p.iterdir())[:12]) or "nothing"
            raise UsageError(f"The model folder {name!r} has no config.json (it holds: {files}). Give a folder saved "
                             "with save_pretrained, a .gguf file, or a Hub model name.")
        return p
    if _looks_like_path(name) or name.count("/") > 1:  # a Hub name is "org/name" at most
        raise UsageError(f"The model {name!r} does not exist. Give a folder saved with save_pretrained, a .gguf file, "
                         "or a Hub model name (org/name).")
    return None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """The tokenizer of a model folder, Hub model or ``.gguf`` file (:func:`cpo.modeling.load_tokenizer`), with a
    user's mistake turned into a :class:`UsageError` that says what to do."""
    from ..modeling import load_tokenizer as load

    try:
        return load(name_or_path, trust_remote_code)
    except ImportError as err:
        raise UsageError(f"This installation of cpo cannot read the tokenizer of {name_or_path!r} ({err}).") from err
    except (OSError, ValueError) as err:
        raise UsageError(f"Cannot load a tokenizer from {name_or_path!r} ({_first_line(err)}). Save the "
                         "tokenizer next to the model (tokenizer.save_pretrained(folder)).") from err


def _adapter_base(path: Path | None) -> str | None:
    """The base model of a PEFT adapter folder (``adapter_config.json`` and no ``config.json``), else None."""
    if path is None or not path.is_dir() or (path / "config.json").is_file():
        return None
    import json

    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise UsageError(f"The adapter folder {str(path)!r} does not name its base model (base_model_name_or_path in "
                         "adapter_config.json); set it to the base model's folder or Hub name.")
    return base


def load_model_and_tokenizer(name_or_path: str, *, dtype: str | None = None, attn_implementation: str | None = None,
                             trust_remote_code: bool = False, init_kwargs: dict | None = None,
                             merge_adapter: bool = True):
    """``(model, tokenizer)`` from a Hub name, a local folder, a PEFT adapter folder or a ``.gguf`` file.

    Args:
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"`` or None (the checkpoint's own, as
            ``from_pretrained`` decides).
        init_kwargs: more keyword arguments of ``from_pretrained``.
        merge_adapter: for an adapter folder (what ``cpo train --use_peft`` saves): load its base model and merge
            the adapter in (evaluation); False keeps a trainable ``PeftModel``.
    """
    from ..modeling import load_model

    path = _check_model_path(name_or_path)
    kwargs = dict(init_kwargs or {})
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    base = _adapter_base(path)
    try:
        model = load_model(base or name_or_path, kwargs, trust_remote_code)
        if base is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(path), is_trainable=not merge_adapter)
            model = model.merge_and_unload() if merge_adapter else model
    except ImportError as err:
        what = "read .gguf files" if str(name_or_path).endswith(".gguf") else "load this model"
        raise UsageError(f"This installation cannot {what}: {err}") from err
    except OSError as err:
        raise UsageError(f"Cannot load the model {name_or_path!r}: {_first_line(err)}") from err
    tokenizer = load_tokenizer(name_or_path, trust_remote_code)
    if str(name_or_path).endswith(".gguf"):
        from ..gguf import align_special_tokens

        align_special_tokens(model, tokenizer)  # generate() then stops at the chat template's end of turn
    return model, tokenizer


def load_for_inference(name_or_path: str, *, dtype: str | None = None, trust_remote_code: bool = False,
                       use_cpu: bool = False):
    """``(model, tokenizer)`` for generation or evaluation (an adapter merged in), on the GPU when there is one and
    ``use_cpu`` is False."""
    model, tokenizer = load_model_and_tokenizer(name_or_path, dtype=dtype, trust_remote_code=trust_remote_code)
    import torch

    if torch.cuda.is_available() and not use_cpu:
        model = model.to("cuda")
    return model, tokenizer
