"""The round-trip judge (cpo.mt.roundtrip): its chrF against a stub back-translator, the prompts it gives a real tiny
model, and `cpo prefs --scorer cpo.mt.roundtrip:score` end to end."""

import json

import pytest
import sacrebleu
from helpers import naive_greedy, save_tiny_model, tiny_qwen2

from cpo.cli import main
from cpo.mt import roundtrip
from cpo.mt.prompts import alma_prompt, prompt_ids
from cpo.mt.roundtrip import ENV_MODEL, model_back_translator, parse_pair, roundtrip_scorer, roundtrip_scores
from cpo.mt.translate import clean_hypothesis
from cpo.pairs.scorers import call_scorer, load_scorer

SOURCES = ["Das Haus ist alt.", "Das Haus ist alt.", "Der Hund schläft."]
CANDIDATES = ["The house is old.", "House old the.", "The dog sleeps."]
# what a perfect back-translator would make of each candidate
BACK = {"The house is old.": "Das Haus ist alt.", "House old the.": "Haus alt das.",
        "The dog sleeps.": "Der Hund schlief."}


def stub(seen: list):
    def back_translate(texts):
        seen.append(list(texts))
        return [BACK[t] for t in texts]
    return back_translate


def test_score_is_sentence_chrf_of_the_back_translation_against_the_source():
    seen = []
    scores = roundtrip_scorer(stub(seen))(SOURCES, CANDIDATES, None)
    assert seen == [CANDIDATES]  # every candidate back-translated, once, in order
    assert len(scores) == 3 and all(type(s) is float for s in scores)
    assert scores == [sacrebleu.sentence_chrf(BACK[c], [s]).score for c, s in zip(CANDIDATES, SOURCES)]
    assert scores[0] == 100.0 > scores[2] > scores[1]  # the faithful candidate comes back as the source itself


def test_references_are_ignored():
    score = roundtrip_scorer(stub([]))
    assert score(SOURCES, CANDIDATES, ["x", "y", "z"]) == score(SOURCES, CANDIDATES, None)


def test_as_a_scorer_through_call_scorer_in_batches():
    seen = []
    by_prompt = call_scorer(roundtrip_scorer(stub(seen)), SOURCES[1:], [[c] for c in CANDIDATES[1:]], None,
                            batch_size=1)
    assert seen == [[CANDIDATES[1]], [CANDIDATES[2]]]
    assert by_prompt == [[roundtrip_scores([s], [c], stub([]))[0]] for s, c in zip(SOURCES[1:], CANDIDATES[1:])]


@pytest.mark.parametrize("source", [[{"role": "user", "content": "Hallo"}], alma_prompt("Hallo.", "de", "en")])
def test_a_source_that_is_not_a_sentence_is_refused(source):
    with pytest.raises(ValueError, match="'source' field"):
        roundtrip_scores([source], ["Hello."], lambda texts: ["Hallo."])


def test_a_back_translator_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="returned 0 texts for 1 candidates"):
        roundtrip_scores(["Hallo."], ["Hello."], lambda texts: [])


def test_parse_pair():
    assert parse_pair("de-en") == ("de", "en")
    with pytest.raises(ValueError, match="SRC-TGT"):
        parse_pair("de")


def test_a_real_tiny_model_back_translates_each_candidate_with_the_alma_prompt(gpt2_tokenizer):
    """Each candidate reaches ``generate`` as the ALMA English->German prompt holding it; each score is the chrF of
    the model's greedy answer (decoded one prompt at a time without padding, up to the first newline) against the
    German source."""
    model = tiny_qwen2(len(gpt2_tokenizer), seed=1)
    calls, real = [], model.generate

    def recording(input_ids, attention_mask, **kwargs):
        calls.append([gpt2_tokenizer.decode(row[mask.bool()], skip_special_tokens=True)
                      for row, mask in zip(input_ids, attention_mask)])
        return real(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    model.generate = recording
    back = model_back_translator(model, gpt2_tokenizer, src_lang="de", tgt_lang="en", batch_size=2,
                                 max_new_tokens=12)
    scores = roundtrip_scorer(back)(SOURCES, CANDIDATES, None)
    assert len(calls) == 2 and sorted(sum(calls, [])) == sorted(alma_prompt(c, "en", "de") for c in CANDIDATES)
    ids = prompt_ids(CANDIDATES, "en", "de", "alma", gpt2_tokenizer)
    expected = [clean_hypothesis(naive_greedy(model, gpt2_tokenizer, i, 12), True) for i in ids]
    assert scores == pytest.approx([sacrebleu.sentence_chrf(b, [s]).score for b, s in zip(expected, SOURCES)])
    assert len(scores) == len(CANDIDATES) and all(isinstance(s, float) for s in scores)


@pytest.fixture
def env_model(tmp_path, gpt2_tokenizer, monkeypatch):
    folder = save_tiny_model(tmp_path / "tiny", gpt2_tokenizer, seed=2)
    monkeypatch.setenv(ENV_MODEL, str(folder))
    roundtrip._env_scorer.cache_clear()
    yield folder
    roundtrip._env_scorer.cache_clear()


def test_prefs_with_the_round_trip_judge(tmp_path, env_model):
    """Each pair is the best and the worst candidate of its row by the judge's scores (computed again here with the
    model that ``cpo prefs`` loaded, once)."""
    rows = [{"source": s, "src_lang": "de", "tgt_lang": "en", "candidates": [c, c.upper(), c[:-1] + "!"]}
            for s, c in zip(SOURCES[1:], CANDIDATES[1:])]
    path, out = tmp_path / "cands.jsonl", tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["prefs", "--candidates", str(path), "--scorer", "cpo.mt.roundtrip:score", "--output", str(out)]) == 0
    fn = load_scorer("cpo.mt.roundtrip:score")
    scores = [fn([r["source"]] * 3, r["candidates"], None) for r in rows]
    assert roundtrip._env_scorer.cache_info().currsize == 1  # one model, loaded once
    assert all(max(s) > min(s) for s in scores)  # this seed's model tells the candidates apart
    pairs = {p["segment_id"]: p for p in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert sorted(pairs) == [1, 2]
    for n, (row, row_scores) in enumerate(zip(rows, scores), start=1):
        best, worst = (row["candidates"][row_scores.index(f(row_scores))] for f in (max, min))
        assert (pairs[n]["chosen"], pairs[n]["rejected"]) == (" " + best, " " + worst)
        assert (pairs[n]["chosen_score"], pairs[n]["rejected_score"]) == (max(row_scores), min(row_scores))


def test_prefs_without_the_model_variable_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(ENV_MODEL, raising=False)
    path = tmp_path / "cands.jsonl"
    path.write_text(json.dumps({"source": SOURCES[0], "candidates": CANDIDATES[:2]}) + "\n", encoding="utf-8")
    assert main(["prefs", "--candidates", str(path), "--scorer", "cpo.mt.roundtrip:score",
                 "--output", str(tmp_path / "p.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"set {ENV_MODEL} to a model folder or a .gguf file" in err and not (tmp_path / "p.jsonl").exists()
