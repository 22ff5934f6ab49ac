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
from ..extras import require
from ..files import check_utf8

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


def load_dataset_dict(name: str, config: str | None = None, streaming: bool = False):
    """All splits of a dataset as a ``DatasetDict`` (a local file becomes its ``train`` split), or, ``streaming``,
    as an ``IterableDatasetDict`` whose rows are read as they are iterated."""
    import datasets

    p = Path(name).expanduser()
    try:
        if p.is_file():
            builder = _file_builder(p)
            if p.stat().st_size == 0:
                raise UsageError(f"The dataset file {name!r} is empty: it needs one preference pair per row.")
            if builder in ("json", "csv") and p.suffix.lower() not in _COMPRESSION:
                check_utf8(p, "dataset")  # datasets would say only "UnicodeDecodeError", naming no file
            return datasets.load_dataset(builder, data_files={"train": str(p)}, streaming=streaming)
        if p.is_dir():
            if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
                loaded = datasets.load_from_disk(str(p))
                loaded = loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)
                if streaming:
                    return datasets.IterableDatasetDict({k: v.to_iterable_dataset() for k, v in loaded.items()})
                return loaded
            for f in sorted(p.rglob("*")):  # the data files datasets would read, with no file named on failure
                if f.suffix.lower() in (".json", ".jsonl", ".csv") and f.is_file():
                    check_utf8(f, "dataset")
            return datasets.load_dataset(str(p), config, streaming=streaming)
    except UsageError:
        raise
    except Exception as err:  # datasets raises many kinds; the user needs the file and the reason
        raise UsageError(f"Cannot read the dataset {name!r}: {_first_line(err)}") from err
    if _looks_like_path(name):
        raise UsageError(f"The dataset {name!r} does not exist. Give a .json/.jsonl/.csv/.parquet file, a folder, or "
                         "a Hugging Face Hub dataset name.")
    try:
        return datasets.load_dataset(name, config, streaming=streaming)
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
    if not hasattr(ds, "__len__"):  # a stream (IterableDataset)
        return _slice_stream(ds, m, spec, source)
    if len(ds) == 0:
        raise UsageError(f"The split {name!r} of {source} has no rows.")
    if m.group("start") is None and m.group("stop") is None:
        return ds
    n = len(ds)
    start, stop, _ = slice(_bound(m.group("start"), n, 0), _bound(m.group("stop"), n, n)).indices(n)
    if stop <= start:
        raise UsageError(f"The split {spec!r} of {source} is empty ({name} has {n} rows).")
    return ds.select(range(start, stop))


def _slice_stream(ds, m: re.Match, spec: str, source: str):
    """A streamed split sliced by row counts from its start: ``skip`` then ``take``."""
    start, stop = m.group("start"), m.group("stop")
    if any(b is not None and (b.endswith("%") or b.startswith("-")) for b in (start, stop)):
        raise UsageError(f"The split {spec!r} of {source} is streamed, so it has no length: slice it with row counts "
                         "from its start, e.g. train[:1800] or train[1800:].")
    first = int(start or 0)
    if stop is not None and int(stop) <= first:
        raise UsageError(f"The split {spec!r} of {source} is empty.")
    ds = ds.skip(first) if first else ds
    return ds.take(int(stop) - first) if stop is not None else ds


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


def check_model_source(name_or_path: str, init_kwargs: dict | None = None) -> Path | None:
    """Check, before anything loads, that the model ``name_or_path`` exists and can honour ``init_kwargs``: a Hub
    ``revision`` only for a Hub name, a ``.gguf`` file only what :func:`cpo.gguf.gguf_load_options` lists, and 4/8-bit
    quantisation only where bitsandbytes runs. Returns the local path, or None for a Hub name.

    Raises:
        UsageError: one line saying what is missing or what the model cannot honour.
    """
    kwargs = dict(init_kwargs or {})
    path = _check_model_path(name_or_path)
    revision = kwargs.get("revision")
    if path is not None and revision not in (None, "main"):
        raise UsageError(f"model_revision {revision!r} names a Hub revision, but {name_or_path!r} is a local "
                         f"{'folder' if path.is_dir() else 'file'}, which has none. Drop model_revision, or give the "
                         "Hub name.")
    if str(name_or_path).endswith(".gguf"):
        try:
            from ..gguf import gguf_load_options

            gguf_load_options(kwargs)
        except ImportError as err:
            raise UsageError(f"This installation cannot read .gguf files: {err}") from err
        except ValueError as err:
            raise UsageError(str(err)) from None
    quantization = kwargs.get("quantization_config")
    if quantization is not None:
        check_bitsandbytes("4-bit" if getattr(quantization, "load_in_4bit", False) else "8-bit")
    return path


def check_bitsandbytes(bits: str) -> None:
    """Raise a :class:`UsageError` unless bitsandbytes, at the version transformers needs, is installed and supports
    one of this machine's devices (``bits``, e.g. ``"4-bit"``, names what was asked for)."""
    from packaging.version import Version
    from transformers.utils import get_available_devices
    from transformers.utils.import_utils import BITSANDBYTES_MIN_VERSION

    wanted = f"{bits} loading (load_in_{bits[0]}bit) needs bitsandbytes>={BITSANDBYTES_MIN_VERSION}"
    try:
        import bitsandbytes
    except ImportError as err:  # absent, or present but broken (one of its own imports failing)
        absent = isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] == "bitsandbytes"
        installed = "is not installed" if absent else f"cannot be imported ({_first_line(err)})"
        raise UsageError(f"{wanted}, which {installed}: pip install 'bitsandbytes>={BITSANDBYTES_MIN_VERSION}'.") \
            from None
    version = str(getattr(bitsandbytes, "__version__", "0"))
    if Version(version) < Version(BITSANDBYTES_MIN_VERSION):
        raise UsageError(f"{wanted}; {version} is installed: pip install -U 'bitsandbytes>={BITSANDBYTES_MIN_VERSION}'.")
    supported = set(getattr(bitsandbytes, "supported_torch_devices", ()))
    devices = set(get_available_devices())
    if not supported & devices:
        raise UsageError(f"{wanted} on a device it supports: bitsandbytes {version} supports "
                         f"{', '.join(sorted(supported)) or 'no device'}, and this machine has "
                         f"{', '.join(sorted(devices))}.")


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None):
    """The tokenizer of a model folder, Hub model or ``.gguf`` file (:func:`cpo.loading.load_tokenizer`), with a
    user's mistake turned into a :class:`UsageError` that says what to do."""
    from ..loading import load_tokenizer as load

    try:
        return load(name_or_path, trust_remote_code, revision)
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
        init_kwargs: more keyword arguments of ``from_pretrained`` (``revision`` also picks the tokenizer's;
            ``quantization_config`` a bitsandbytes one), checked by :func:`check_model_source`.
        merge_adapter: for an adapter folder (what ``cpo train --use_peft`` saves): load its base model and merge
            the adapter in (evaluation); False keeps a trainable ``PeftModel``.
    """
    from ..loading import load_model

    kwargs = dict(init_kwargs or {})
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    path = check_model_source(name_or_path, kwargs)
    base = _adapter_base(path)
    try:
        model = load_model(base or name_or_path, kwargs)
        if kwargs.get("quantization_config") is not None:
            _no_cpu_inference_packing(model)
        if base is not None:
            PeftModel = require("peft", "peft", "An adapter folder").PeftModel
            model = PeftModel.from_pretrained(model, str(path), is_trainable=not merge_adapter)
            model = model.merge_and_unload() if merge_adapter else model
    except ImportError as err:
        what = "read .gguf files" if str(name_or_path).endswith(".gguf") else "load this model"
        raise UsageError(f"This installation cannot {what}: {err}") from err
    except OSError as err:
        raise UsageError(f"Cannot load the model {name_or_path!r}: {_first_line(err)}") from err
    tokenizer = load_tokenizer(name_or_path, bool(kwargs.get("trust_remote_code")), kwargs.get("revision"))
    if str(name_or_path).endswith(".gguf"):
        from ..gguf import align_special_tokens

        align_special_tokens(model, tokenizer)  # generate() then stops at the chat template's end of turn
    return model, tokenizer


def _no_cpu_inference_packing(model) -> None:
    """Keep bitsandbytes' 4-bit weights trainable on a CPU. bitsandbytes (0.50) repacks them for CPU inference at the
    first forward in eval mode without gradients (an evaluation, the trainer's probes), and its training forward then
    fails on the repacked weights ("a view of a leaf Variable ... in-place operation")."""
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False


def load_for_inference(name_or_path: str, *, dtype: str | None = None, trust_remote_code: bool = False,
                       use_cpu: bool = False):
    """``(model, tokenizer)`` for generation or evaluation (an adapter merged in), on the GPU when there is one and
    ``use_cpu`` is False."""
    model, tokenizer = load_model_and_tokenizer(name_or_path, dtype=dtype, trust_remote_code=trust_remote_code)
    import torch

    if torch.cuda.is_available() and not use_cpu:
        model = model.to("cuda")
    return model, tokenizer
