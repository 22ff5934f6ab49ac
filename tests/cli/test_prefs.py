"""cpo.prefs and cpo.candidates, and `cpo prefs` on WMT'22 and MQM data."""

import csv
import functools
import json
import random
import re
from collections import defaultdict

import pytest
import sacrebleu
from helpers import asset

from cpo.cli import main
from cpo.errors import UsageError
from cpo.files import read_lines
from cpo.mt.candidates import mqm_segments, named_systems, system_names
from cpo.mt.pairs import pair_row
from cpo.mt.prompts import alma_prompt
from cpo.mt.scores import sentence_scores
from cpo.pairs.rule import Candidate, Segment, build_rows, select_pair


def seg(*cands, source="Quelle."):
    return Segment(7, source, [Candidate(n, t, s) for n, t, s in cands])


def test_select_pair_best_and_worst():
    s = seg(("a", "x", 10.0), ("b", "y", 30.0), ("c", "z", 20.0))
    assert [c.system for c in select_pair(s, True, 0.0)[:2]] == ["b", "a"]
    assert [c.system for c in select_pair(s, False, 0.0)[:2]] == ["a", "b"]  # lower is better
    assert select_pair(s, True, 20.0)[2] == ""  # a gap of 20 is not below 20
    assert select_pair(s, True, 20.0 + 1e-9)[2] == "below_threshold"
    assert select_pair(s, True, 19.9)[2] == ""


@pytest.mark.parametrize("segment, reason", [
    (seg(("a", "x", 1.0), ("b", "y", 2.0), source="  "), "empty_source"),
    (seg(("a", "", 1.0), ("b", "y", 2.0)), "fewer_than_two_candidates"),  # empty candidate
    (seg(("a", "x", None), ("b", "y", 2.0)), "fewer_than_two_candidates"),  # unscored candidate
    (seg(("a", "x", 5.0), ("b", "y", 5.0)), "tie"),
    (seg(("a", "same", 9.0), ("b", "same ", 1.0)), "identical"),
])
def test_select_pair_skip_reasons(segment, reason):
    assert select_pair(segment, True, 0.0) == (None, None, reason)


def test_ties_without_rng_follow_the_order_and_with_rng_stay_among_the_tied():
    s = seg(("ref", "r", 100.0), ("a", "x", 100.0), ("b", "y", 3.0), ("c", "z", 3.0))
    chosen, rejected, _ = select_pair(s, True, 0.0)
    assert (chosen.system, rejected.system) == ("ref", "c")
    seen = set()
    rng = random.Random(0)
    for _ in range(40):
        chosen, rejected, _ = select_pair(s, True, 0.0, rng)
        seen.add((chosen.system, rejected.system))
    assert seen == {("ref", "b"), ("ref", "c"), ("a", "b"), ("a", "c")}


def test_sentence_scores_equal_sacrebleu():
    hyps, refs = ["The cat sat on the mat.", "A dog."], ["The cat is on the mat.", "The dog barks."]
    assert sentence_scores(hyps, refs, "chrf") == [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(hyps, refs)]
    assert sentence_scores(hyps, refs, "bleu") == [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hyps, refs)]


def test_pair_rows_in_both_formats():
    s = Segment(3, "Das Haus.", [])
    chosen, rejected = Candidate("ref", "The house.", 100.0), Candidate("sys", "House the. ", 20.5)
    prompt = "Translate this from German to English:\nGerman: Das Haus.\nEnglish:"
    meta = {"segment_id": 3, "chosen_system": "ref", "rejected_system": "sys", "chosen_score": 100.0,
            "rejected_score": 20.5}
    assert pair_row(s, chosen, rejected, src_lang="de", tgt_lang="en") == {
        "prompt": prompt, "chosen": " The house.", "rejected": " House the.", **meta}
    assert pair_row(s, chosen, rejected, src_lang="de", tgt_lang="en", fmt="conversational") == {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": "The house."}],
        "rejected": [{"role": "assistant", "content": "House the."}], **meta}


def test_build_rows_counts_every_skip():
    segments = [seg(("a", "x", 1.0), ("b", "y", 2.0)), seg(("a", "x", 1.0), ("b", "y", 1.0)),
                seg(("a", "x", 1.0), ("b", "", 2.0)), seg(("a", "x", 1.0), ("b", "y", 1.5))]
    make_row = functools.partial(pair_row, src_lang="de", tgt_lang="en")
    rows, report = build_rows(segments, make_row, higher_is_better=True, threshold=0.75)
    assert len(rows) == report.rows == 1
    assert dict(report.skipped) == {"tie": 1, "fewer_than_two_candidates": 1, "below_threshold": 1}
    assert dict(report.unusable) == {"empty": 1}
    assert report.chosen_systems == {"b": 1} and report.rejected_systems == {"a": 1}


def test_system_names_from_the_wmt_layout():
    paths = ["d/wmt22/GPT-4-1106-preview/deen/test.de-en.en", "d/wmt22/ALMA-13B-LoRA/deen/test.de-en.en"]
    assert system_names(paths) == ["GPT-4-1106-preview", "ALMA-13B-LoRA"]
    assert named_systems(["G=x/a.en", "x/b.en"], "reference") == [("G", "x/a.en"), ("b.en", "x/b.en")]
    with pytest.raises(UsageError, match="Two candidates are named 'reference'"):
        named_systems(["reference=a.en"], "reference")


def _wmt_args(out, *extra):
    wmt = asset("wmt22")
    return ["prefs", "--src", str(wmt / "wmt-testset/deen/test.de-en.de"),
            "--ref", str(wmt / "wmt-testset/deen/test.de-en.en"),
            "--system", str(wmt / "GPT-4-1106-preview/deen/test.de-en.en"),
            "--system", str(wmt / "ALMA-13B-LoRA/deen/test.de-en.en"),
            "--src_lang", "de", "--tgt_lang", "en", "--output", str(out), *extra]


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_prefs_on_wmt22_deen(tmp_path, capsys):
    """Reference, GPT-4 and ALMA-13B-LoRA scored by chrF: the reference (100) is chosen unless both systems score
    100 too (a tie), so the row count is the segment count minus those segments, computed here with sacrebleu
    directly (the 40 segments of tests/assets)."""
    wmt = asset("wmt22")
    src = read_lines(wmt / "wmt-testset/deen/test.de-en.de")
    ref = read_lines(wmt / "wmt-testset/deen/test.de-en.en")
    gpt4 = read_lines(wmt / "GPT-4-1106-preview/deen/test.de-en.en")
    alma = read_lines(wmt / "ALMA-13B-LoRA/deen/test.de-en.en")
    chrf = {name: [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(hyps, ref)]
            for name, hyps in (("GPT-4-1106-preview", gpt4), ("ALMA-13B-LoRA", alma), ("reference", ref))}
    ties = sum(1 for g, a in zip(chrf["GPT-4-1106-preview"], chrf["ALMA-13B-LoRA"]) if g == a == 100.0)
    out = tmp_path / "prefs.jsonl"
    assert main(_wmt_args(out)) == 0
    rows = _read_jsonl(out)
    assert len(rows) == len(src) - ties and len(src) == 40
    assert f"{ties} tie" in capsys.readouterr().out
    for row in rows[::97]:  # spot checks
        i = row["segment_id"] - 1
        assert row["prompt"] == alma_prompt(src[i], "de", "en")
        assert row["chosen"] == " " + ref[i].strip() and row["chosen_score"] == 100.0
        assert row["rejected_score"] == chrf[row["rejected_system"]][i] == min(
            chrf["GPT-4-1106-preview"][i], chrf["ALMA-13B-LoRA"][i])
        assert sacrebleu.sentence_chrf(row["chosen"].strip(), [ref[i]]).score > sacrebleu.sentence_chrf(
            row["rejected"].strip(), [ref[i]]).score


def test_prefs_without_the_reference(tmp_path):
    out = tmp_path / "sys.jsonl"
    assert main(_wmt_args(out, "--exclude_reference", "--threshold", "5", "--format", "conversational")) == 0
    rows = _read_jsonl(out)
    ref = read_lines(asset("wmt22", "wmt-testset/deen/test.de-en.en"))
    assert 0 < len(rows) < len(ref)
    assert {r["chosen_system"] for r in rows} == {"GPT-4-1106-preview", "ALMA-13B-LoRA"}
    for row in rows[::50]:
        i = row["segment_id"] - 1
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert row["chosen_score"] - row["rejected_score"] >= 5
        assert sacrebleu.sentence_chrf(chosen, [ref[i]]).score == row["chosen_score"]
        assert sacrebleu.sentence_chrf(rejected, [ref[i]]).score == row["rejected_score"]


def _mqm_reference(tsv, scores):
    """Independent reading of the MQM files: per segment, {system: score} and {system: text without marks}."""
    with open(tsv, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts = defaultdict(dict)
    for r in rows:
        texts[int(r["seg_id"])][r["system"]] = r["target"].replace("<v>", "").replace("</v>", "")
    alias = {"ref-A": "ref", "ref-B": "refB"}
    by_seg = defaultdict(dict)
    for line in open(scores, encoding="utf-8").read().splitlines()[1:]:
        system, score, seg_id = line.split()
        if score != "None":
            by_seg[int(seg_id)][alias.get(system, system)] = float(score)
    return texts, by_seg


@pytest.mark.parametrize("pair", ["ende", "zhen"])
def test_prefs_from_mqm(tmp_path, pair):
    tsv = asset("wmt-mqm", "ted", pair, f"mqm_ted_{pair}.tsv")
    texts, scores = _mqm_reference(tsv, tsv.with_name(f"mqm_ted_{pair}.avg_seg_scores.tsv"))
    out = tmp_path / "mqm.jsonl"
    assert main(["prefs", "--mqm", str(tsv), "--src_lang", pair[:2], "--tgt_lang", pair[2:],
                 "--output", str(out)]) == 0
    rows = _read_jsonl(out)
    assert len(texts) == 25  # the first 25 annotated segments (tests/assets)
    ties = sum(1 for s in texts if len(set(scores[s].values())) == 1)
    assert 15 < len(rows) <= 25 - ties
    for row in rows:
        seg_scores = scores[row["segment_id"]]
        assert row["chosen_score"] == max(seg_scores.values()) > row["rejected_score"] == min(seg_scores.values())
        assert seg_scores[row["chosen_system"]] == row["chosen_score"]
        assert row["chosen"] == " " + texts[row["segment_id"]][row["chosen_system"]].strip()
        assert "<v>" not in row["prompt"] + row["chosen"] + row["rejected"]


def test_mqm_exclude_reference_and_notes():
    tsv = asset("wmt-mqm", "ted", "ende", "mqm_ted_ende.tsv")
    segments, notes = mqm_segments(tsv, include_reference=False)
    assert len(segments) == 25
    assert not any(c.system.startswith("ref") for s in segments for c in s.candidates)
    assert all(len(s.candidates) == 13 for s in segments)  # the 14 systems of these segments, less the reference
    assert not any("score entries are None" in n for n in notes)  # all 25 segments were annotated
    zh_tsv = asset("wmt-mqm", "ted", "zhen", "mqm_ted_zhen.tsv")
    nones = sum(line.split()[1] == "None" for line in zh_tsv.with_name("mqm_ted_zhen.avg_seg_scores.tsv")
                .read_text(encoding="utf-8").splitlines()[1:])
    _, zh_notes = mqm_segments(zh_tsv, include_reference=False)
    assert nones > 0 and f"{nones} score entries are None" in zh_notes[0]


def _lines(path, lines):
    path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return str(path)


def test_prefs_error_paths(tmp_path, capsys):
    src = _lines(tmp_path / "s.de", ["Hallo.", "Ja."])
    ref = _lines(tmp_path / "r.en", ["Hello.", "Yes."])
    a = _lines(tmp_path / "a.en", ["Hi.", "Yes."])
    short = _lines(tmp_path / "b.en", ["Hi."])
    bad = _lines(tmp_path / "bad.txt", ["1.5", "oops"])
    base = ["prefs", "--src", src, "--ref", ref, "--src_lang", "de", "--tgt_lang", "en",
            "--output", str(tmp_path / "o.jsonl")]
    cases = [
        (["--system", str(tmp_path / "nope.en")], "nope.en' does not exist"),
        (["--system", short], "source .* has 2 segments but the output of b.en .* has 1"),
        (["--system", a, "--metric", "given", "--scores", f"a.en={bad}"], "missing: reference"),
        (["--system", a, "--metric", "given", "--scores", f"zzz={bad}"], "'zzz', which is not a candidate"),
        (["--system", a, "--metric", "given", "--scores", f"a.en={bad}", "--scores", f"reference={bad}"],
         "line 2, holds 'oops'"),
        (["--system", a, "--scores", f"a.en={bad}"], "used with --metric given only"),
        (["--system", a, "--lower_is_better"], "applies to --metric given"),
        (["--mqm", src, "--system", a], "drop --src"),
        ([], "at least one --system"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert re.search(message, err), (extra, err)


def test_prefs_given_scores_lower_is_better(tmp_path):
    src = _lines(tmp_path / "s.de", ["Hallo.", "Ja.", "Nein."])
    ref = _lines(tmp_path / "r.en", ["Hello.", "Yes.", "No."])
    a = _lines(tmp_path / "a.en", ["Hi.", "Yeah.", "Nope."])
    scores = {"reference": [1, 0, 2], "a": [0, 3, 2]}
    files = [f"{n}={_lines(tmp_path / f'{n}.err', v)}" for n, v in scores.items()]
    out = tmp_path / "o.jsonl"
    assert main(["prefs", "--src", src, "--ref", ref, "--system", f"a={a}", "--metric", "given", "--lower_is_better",
                 "--scores", files[0], "--scores", files[1], "--src_lang", "de", "--tgt_lang", "en",
                 "--output", str(out)]) == 0
    rows = _read_jsonl(out)
    assert [(r["segment_id"], r["chosen_system"], r["rejected_system"]) for r in rows] == [
        (1, "a", "reference"), (2, "reference", "a")]  # segment 3 is a tie (2 and 2)
    assert rows[0]["chosen"] == " Hi." and rows[1]["rejected"] == " Yeah."


@pytest.mark.parametrize("score_field", ["kiwi", "xcomet", "kiwi_xcomet"])
def test_alma_preference_writes_exactly_the_rules_pairs_with_the_alma_prompt(tmp_path, capsys, score_field):
    from alma_fixture import EXPECTED_ROW0, ROWS

    data = tmp_path / "alma_r.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    assert main(["prefs", "--alma_preference", str(data), "--directions", "de-en,en-de", "--score_field",
                 score_field, "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    c, r = EXPECTED_ROW0[score_field]
    de_en, en_de = alma_prompt("D-ref", "de", "en"), alma_prompt("ref", "en", "de")
    assert [(x["prompt"], x["chosen"], x["rejected"]) for x in rows] == [
        (de_en, f" {c}", f" {r}"), (en_de, " D-gpt4", " D-ref"), (de_en, " ref", " alma"), (de_en, " gpt4", " ref"),
        (de_en, " gpt4", " alma"), (de_en, " alma", " gpt4"), (en_de, " D-alma", " D-ref")]
    report = capsys.readouterr().out
    assert "read 9 rows (alma-r schema); 7 pairs: de-en 5, en-de 2" in report
    assert "identical chosen and rejected, dropped: 2 (the released code would have trained on them)" in report


def test_alma_preference_refusals_name_the_row_field_or_flag_and_keep_the_output(tmp_path, capsys):
    from alma_fixture import ROWS

    bad = json.loads(json.dumps(ROWS[1]))
    del bad["translation"]["gpt4_en_kiwi_xcomet"]
    data = tmp_path / "alma_r.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    out.write_text("mine\n", encoding="utf-8")
    common = ["prefs", "--alma_preference", str(data), "--output", str(out)]
    assert main([*common, "--directions", "de-en"]) == 2
    assert "Row 1, field 'translation.gpt4_en_kiwi_xcomet': is missing" in capsys.readouterr().err
    assert main([*common, "--directions", "de-en,xx-en"]) == 2
    assert "'xx-en' is not a direction of two known language codes" in capsys.readouterr().err
    assert main([*common, "--directions", "de-en,fr-en", "--invalid_rows", "skip"]) == 2
    assert "No row has the direction(s) fr-en; the data has de-en, en-de" in capsys.readouterr().err
    assert main([*common]) == 2 and "needs --directions" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "mine\n"
    assert main([*common, "--directions", "de-en", "--invalid_rows", "skip"]) == 0
    assert "invalid rows skipped: 1 (field translation.gpt4_en_kiwi_xcomet)" in capsys.readouterr().out
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1
