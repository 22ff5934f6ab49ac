"""cpo.mt: the ALMA prompt, language names, line and JSON readers, alignment checks."""

import json

import pytest
from helpers import asset

from cpo.errors import UsageError
from cpo.files import check_aligned, read_lines, write_jsonl, write_lines
from cpo.mt.prompts import alma_prompt, language_name
from cpo.mt.segments import read_segments


def test_alma_prompt_is_the_papers_template():
    assert alma_prompt("Guten Morgen.", "de", "en") == (
        "Translate this from German to English:\nGerman: Guten Morgen.\nEnglish:")
    assert alma_prompt("早上好。", "zh", "en") == "Translate this from Chinese to English:\nChinese: 早上好。\nEnglish:"
    assert alma_prompt("Hi.", "en", "is") == "Translate this from English to Icelandic:\nEnglish: Hi.\nIcelandic:"


def test_language_names():
    assert [language_name(c) for c in ("cs", "de", "is", "ru", "zh", "en", "DE")] == [
        "Czech", "German", "Icelandic", "Russian", "Chinese", "English", "German"]
    assert language_name("Swahili") == "Swahili"  # a full name passes through
    with pytest.raises(UsageError, match=r"Unknown language code 'xx'.*cs, de"):
        language_name("xx")


def test_read_lines_keeps_empty_lines_and_splits_only_on_newline(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes("one\r\n\nthree\u2028still three\n".encode())
    assert read_lines(p) == ["one", "", "three\u2028still three"]
    p.write_text("no final newline", encoding="utf-8")
    assert read_lines(p) == ["no final newline"]


@pytest.mark.parametrize("content, message", [
    (None, r"'.*missing\.txt' does not exist"),
    (b"", r"is empty"),
    (b"ok\n\xff\xfe bad\n", r"not UTF-8 \(line 2"),
])
def test_read_lines_errors(tmp_path, content, message):
    p = tmp_path / "missing.txt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        read_lines(p, "source")


def test_read_lines_on_a_folder(tmp_path):
    with pytest.raises(UsageError, match="is a folder"):
        read_lines(tmp_path, "source")


def test_json_array_and_jsonl_records(tmp_path):
    records = [{"translation": {"de": "Hallo", "en": "Hello"}}, {"translation": {"de": "Ja", "en": "Yes"}}]
    arr = tmp_path / "t.json"
    arr.write_text(json.dumps(records), encoding="utf-8")
    lines = tmp_path / "t.jsonl"
    lines.write_text("\n".join(json.dumps({"text": r["translation"]["en"], "meta": {"id": i}})
                               for i, r in enumerate(records)) + "\n", encoding="utf-8")
    assert read_segments(arr, lang="de") == ["Hallo", "Ja"]
    assert read_segments(arr, lang="en") == ["Hello", "Yes"]
    assert read_segments(arr, field="translation.en") == ["Hello", "Yes"]
    assert read_segments(lines, field="text") == ["Hello", "Yes"]
    assert read_segments(lines, lang="text") == ["Hello", "Yes"]  # no "translation" object: the field is the code


def test_json_errors_name_the_row_and_the_fields(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"translation": {"de": "a", "en": "b"}}\n{"translation": {"de": "c"}}\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"row 2, has no field 'translation.en' \(it has: translation.de\)"):
        read_segments(p, lang="en", what="reference")
    with pytest.raises(UsageError, match=r"Which field.*translation.de, translation.en"):
        read_segments(p)
    p.write_text('{"a": 1}\n{"a": [2]\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"line 2, is not valid JSON"):
        read_segments(p, field="a")
    p.write_text('{"a": 1}\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"row 1, field 'a' is a int, not text"):
        read_segments(p, field="a")
    with pytest.raises(UsageError, match="plain text file"):
        read_segments(tmp_path / "x.txt", field="a")


def test_check_aligned_gives_both_counts():
    assert check_aligned([("source", [1, 2]), ("reference", [3, 4])]) == 2
    with pytest.raises(UsageError, match=r"source a.de has 3 segments but the output of B \(b.en\) has 2"):
        check_aligned([("source a.de", [1, 2, 3]), ("reference", [1, 2, 3]), ("output of B (b.en)", [1, 2])])


def test_write_lines_keeps_one_segment_a_line(tmp_path):
    p = tmp_path / "sub" / "hyp.txt"
    assert write_lines(p, ["a", "b\nc", "d\r\ne"]) == 2
    assert read_lines(p) == ["a", "b c", "d  e"]


def test_writes_are_atomic_and_keep_the_usual_permissions(tmp_path):
    """A failure while writing leaves the previous file (and no temporary one); a new file gets the permissions
    open() would give it under the current umask, not mkstemp's private 0600."""
    import os

    p = tmp_path / "rows.jsonl"
    write_jsonl(p, [{"a": 1}])
    umask = os.umask(0o022)
    try:
        write_jsonl(p, [{"a": 2}])
        assert (p.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(umask)

    def rows():
        yield {"a": 3}
        raise RuntimeError("the scorer failed half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        write_jsonl(p, rows())
    assert p.read_text() == '{"a": 2}\n' and [x.name for x in tmp_path.iterdir()] == ["rows.jsonl"]


def test_wmt_json_and_line_files_agree():
    """The WMT'22 de-en test set as JSON (wmt-human-written) and as line files (wmt22) hold the same segments (the
    40 of tests/assets)."""
    js = asset("wmt-human-written", "deen", "test.de-en.json")
    src = read_lines(asset("wmt22", "wmt-testset", "deen", "test.de-en.de"))
    ref = read_lines(asset("wmt22", "wmt-testset", "deen", "test.de-en.en"))
    assert len(src) == 40
    assert read_segments(js, lang="de") == src
    assert read_segments(js, lang="en") == ref
