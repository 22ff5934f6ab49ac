"""cpo.loading: preference data from every accepted source, sliced splits, and clear errors."""

import json

import datasets
import pytest
from helpers import preference_rows

from cpo.cli.loading import load_dataset_dict, load_dataset_split, select_split
from cpo.errors import UsageError

ROWS = preference_rows(10)


def _jsonl(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_file_type_gives_the_same_rows(tmp_path, suffix):
    path = tmp_path / f"pairs{suffix}"
    ds = datasets.Dataset.from_list(ROWS)
    if suffix == ".jsonl":
        _jsonl(path)
    elif suffix == ".json":
        path.write_text(json.dumps(ROWS), encoding="utf-8")  # a JSON array
    elif suffix == ".csv":
        ds.to_csv(str(path), index=False)
    else:
        ds.to_parquet(str(path))
    loaded = load_dataset_split(str(path), None, "train")
    assert loaded.to_list() == ROWS


def test_folders_of_files_and_saved_datasets(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", ROWS[:7])
    _jsonl(folder / "test.jsonl", ROWS[7:])
    splits = load_dataset_dict(str(folder))
    assert sorted(splits) == ["test", "train"] and splits["test"].to_list() == ROWS[7:]
    saved = tmp_path / "saved"
    datasets.DatasetDict(train=datasets.Dataset.from_list(ROWS)).save_to_disk(str(saved))
    assert load_dataset_split(str(saved), None, "train[2:4]").to_list() == ROWS[2:4]


@pytest.mark.parametrize("spec, expected", [
    ("train", ROWS), ("train[:3]", ROWS[:3]), ("train[7:]", ROWS[7:]), ("train[-2:]", ROWS[-2:]),
    ("train[:30%]", ROWS[:3]), ("train[90%:]", ROWS[9:]), ("train[2:-5]", ROWS[2:5]),
])
def test_split_slices_follow_python(spec, expected):
    splits = {"train": datasets.Dataset.from_list(ROWS)}
    assert select_split(splits, spec).to_list() == expected


@pytest.mark.parametrize("spec, message", [
    ("test", r"has no split 'test'; it has: train"),
    ("train[5:2]", r"is empty \(train has 10 rows\)"),
    ("train[a:b]", r"Cannot read the split"),
])
def test_split_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        select_split({"train": datasets.Dataset.from_list(ROWS)}, spec)


def test_dataset_errors(tmp_path):
    with pytest.raises(UsageError, match=r"'.*none.jsonl' does not exist"):
        load_dataset_dict(str(tmp_path / "none.jsonl"))
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(UsageError, match="is empty"):
        load_dataset_dict(str(tmp_path / "empty.jsonl"))
    (tmp_path / "pairs.txt").write_text("a\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"not one of .json, .jsonl, .csv, .parquet"):
        load_dataset_dict(str(tmp_path / "pairs.txt"))
    (tmp_path / "broken.jsonl").write_text('{"prompt": "a", "chosen": \n', encoding="utf-8")
    with pytest.raises(UsageError, match="Cannot read the dataset"):
        load_dataset_dict(str(tmp_path / "broken.jsonl"))
    (tmp_path / "header.csv").write_text("prompt,chosen,rejected\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"Cannot read the dataset '.*header.csv'"):
        load_dataset_split(str(tmp_path / "header.csv"), None, "train")
    with pytest.raises(UsageError, match="'train' of .* has no rows"):
        select_split({"train": datasets.Dataset.from_list(ROWS).select([])}, "train", "The dataset 'x'")
