"""The WMT slices shipped in src/cpo/demo/data: what their README says of them, the loader, and the dev split."""

import doctest
import hashlib
import json
import re
from pathlib import Path

import pytest
from helpers import ROOT

import cpo.demo.mt_data
from cpo.demo.mt_data import SLICES, Sentence, data_folder, load_slice, load_slices, split_dev

DATA = ROOT / "src" / "cpo" / "demo" / "data"


def readme_table() -> dict[str, tuple[int, int, str]]:
    """``{file: (rows, bytes, sha256)}`` from the table of data/README.md."""
    text = (DATA / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w.-]+\.jsonl)` \|[^|]*\| (\d+) \| (\d+) \| `([0-9a-f]{64})` \|$", text, re.M)
    return {name: (int(n), int(size), sha) for name, n, size, sha in rows}


def test_the_readme_states_each_file_s_rows_size_and_sha256():
    table = readme_table()
    assert set(table) == set(SLICES.values())
    for name, (rows, size, sha) in table.items():
        raw = (DATA / name).read_bytes()
        assert (raw.count(b"\n"), len(raw), hashlib.sha256(raw).hexdigest()) == (rows, size, sha), name


def test_the_package_reads_its_own_files():
    assert Path(str(data_folder())).resolve() == DATA.resolve()  # importlib.resources finds src/cpo/demo/data


def test_slices_are_the_stated_cut():
    slices = load_slices()
    dev, test = slices["dev"], slices["test"]
    assert [s.id for s in dev] == list(range(1, 1003))
    assert [s.id for s in test] == list(range(1, 1985, 8)) and len(test) == 248
    assert test[0] == Sentence(1, "Die Ware hat unter 20 Euro gekostet.", "The goods cost less than 20 euros.")
    assert not {s.de for s in dev} & {s.de for s in test}  # nothing measured on was trained on
    assert all(s.de.strip() and s.en.strip() and "\n" not in s.de + s.en for s in dev + test)


def test_a_missing_or_damaged_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"wmt22-deen-test\.jsonl is missing .*Reinstall cpo"):
        load_slice("test", tmp_path)
    (tmp_path / SLICES["test"]).write_text(json.dumps({"id": 1, "de": "Hallo."}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"wmt22-deen-test\.jsonl, line 1, is not"):
        load_slice("test", tmp_path)
    with pytest.raises(KeyError, match="ships dev, test"):
        load_slice("train")


def test_split_is_disjoint_complete_seeded_and_sized():
    dev = load_slice("dev")
    split = split_dev(dev, pref=400, validation=100, seed=0)
    parts = [[s.id for s in part] for part in (split.sft, split.pref, split.validation)]
    assert [len(p) for p in parts] == [502, 400, 100]
    assert sorted(sum(parts, [])) == [s.id for s in dev]  # disjoint and together the whole dev set
    assert all(p == sorted(p) for p in parts)  # file order within each part
    assert split_dev(dev, seed=0) == split  # the defaults are these sizes, and the same seed the same split
    other = split_dev(dev, seed=1)
    assert [s.id for s in other.validation] != parts[2] and len(other.validation) == 100


def test_split_takes_validation_first_so_it_does_not_move_with_pref():
    """The hold-out depends on the seed and its own size only: a change of the preference share cannot leak
    validation sentences into training."""
    dev = load_slice("dev")
    assert split_dev(dev, pref=100, seed=3).validation == split_dev(dev, pref=600, seed=3).validation


@pytest.mark.parametrize("pref, validation", [(-1, 10), (10, -1), (900, 102), (0, 1002)])
def test_split_refuses_sizes_that_leave_stage_1_empty(pref, validation):
    with pytest.raises(ValueError, match="leave stage 1 at least one"):
        split_dev(load_slice("dev"), pref=pref, validation=validation)


def test_doctests():
    assert doctest.testmod(cpo.demo.mt_data).failed == 0
