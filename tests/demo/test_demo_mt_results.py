"""The committed translation-demo results recompute: every stored BLEU, chrF and round-trip score from the stored
translations and back-translations against the WMT sentences shipped in the package, the study has the protocol's
seeds, judges and arms, no held-out sentence was trained on, and the README's table is the one the results make."""

import json
from pathlib import Path

import pytest
import sacrebleu

from cpo.demo.mt_data import load_slices, split_dev
from cpo.demo.mt_report import mt_table

ROOT = Path(__file__).resolve().parents[2]
RESULTS = json.loads((ROOT / "benchmarks" / "results" / "demo-mt-cpu.json").read_text(encoding="utf-8"))


def models(results: dict):
    yield "base", results["base"]
    yield "sft_ref", results["stage1"]
    for seed in results["seeds"]:
        for key, run in seed["runs"].items():
            yield f"{key}/{seed['seed']}", run


def test_every_stored_score_recomputes_from_the_stored_translations():
    test = {s.id: s for s in load_slices()["test"]}
    heldout = [test[i] for i in RESULTS["heldout_ids"]]
    refs, sources = [s.en for s in heldout], [s.de for s in heldout]
    n_rt = RESULTS["settings"]["roundtrip_sentences"]
    for name, run in models(RESULTS):
        assert len(run["hypotheses"]) == len(heldout) == 200 and len(run["back_translations"]) == n_rt, name
        assert run["bleu"] == pytest.approx(sacrebleu.corpus_bleu(run["hypotheses"], [refs]).score), name
        assert run["chrf"] == pytest.approx(sacrebleu.corpus_chrf(run["hypotheses"], [refs]).score), name
        rt = [sacrebleu.sentence_chrf(b, [s]).score for b, s in zip(run["back_translations"], sources)]
        assert run["roundtrip"] == pytest.approx(sum(rt) / n_rt), name


def test_the_study_follows_its_protocol_and_trains_on_no_held_out_sentence():
    s = RESULTS["settings"]
    assert [x["seed"] for x in RESULTS["seeds"]] == [100, 101, 102] and s["eval_split"] == "test"
    assert tuple(s["judges"]) == ("roundtrip", "chrf-ref") and tuple(s["arms"]) == ("sft_chosen", "cpo", "arpo")
    slices = load_slices()
    assert RESULTS["heldout_ids"] == [x.id for x in slices["test"]][:200]
    assert not {x.de for x in slices["test"]} & {x.de for x in slices["dev"]}  # training is WMT'21 dev only
    split = split_dev(slices["dev"], pref=s["pref_pool"], validation=s["validation"], seed=0)
    pool = {x.id for x in split.pref}
    for seed in RESULTS["seeds"]:
        assert len(seed["pref_ids"]) == s["pref_prompts"] and set(seed["pref_ids"]) <= pool
        assert set(seed["runs"]) == {"sft_more_refs"} | {f"{a}@{j}" for a in s["arms"] for j in s["judges"]}


def test_the_readme_shows_the_table_the_results_make():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert mt_table(RESULTS) in readme
