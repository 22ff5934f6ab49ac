"""`cpo generate`: prompt datasets and sentences to translate, the same file for the same seed, greedy candidates
equal to `cpo eval`'s hypotheses, line files `cpo prefs --system` reads, a .gguf model, clear errors."""

import json
import re

import pytest
from helpers import save_tiny_model
from tiny_gguf import write_tiny_llama

from cpo.cli import main
from cpo.files import read_lines

SOURCES = ["Das Haus ist alt.", "Ja.", "Die Ware hat unter 20 Euro gekostet.", "Nein, danke.", "Bis morgen."]
REFERENCES = ["The house is old.", "Yes.", "The goods cost less than 20 euros.", "No, thanks.", "See you tomorrow."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, gpt2_tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", gpt2_tokenizer, seed=5)


def lines(path, items):
    path.write_text("".join(f"{x}\n" for x in items), encoding="utf-8")
    return str(path)


def read_jsonl(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_dataset_prompts_same_seed_same_file(tiny, tmp_path, capsys):
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "id": i, "reference": f"ref {i}"}) + "\n"
                            for i, p in enumerate(["2 + 2 =", "The capital of France is", "Zen:"])))
    base = ["generate", "--model_name_or_path", str(tiny), "--dataset_name", str(data), "--num_samples", "3",
            "--max_new_tokens", "5", "--seed", "0", "--use_cpu", "--disable_tqdm"]
    assert main([*base, "--output", str(tmp_path / "a.jsonl")]) == 0
    out = capsys.readouterr().out
    assert main([*base, "--output", str(tmp_path / "b.jsonl")]) == 0
    assert main([*base, "--seed", "1", "--output", str(tmp_path / "c.jsonl")]) == 0
    a, b, c = (tmp_path / f"{x}.jsonl" for x in "abc")
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    rows = read_jsonl(a)
    assert [(r["prompt"], r["id"], r["reference"]) for r in rows] == [
        ("2 + 2 =", 0, "ref 0"), ("The capital of France is", 1, "ref 1"), ("Zen:", 2, "ref 2")]
    kept = sum(len(r["candidates"]) for r in rows)
    assert 3 <= kept <= 9 and all(len(set(r["candidates"])) == len(r["candidates"]) for r in rows)
    assert f"3 prompts, 9 answers (3 samples each): {kept} candidates kept, {9 - kept} duplicates dropped" in out


def test_translation_greedy_candidates_are_evals_hypotheses(tiny, tmp_path):
    src, ref = lines(tmp_path / "s.de", SOURCES), lines(tmp_path / "r.en", REFERENCES)
    assert main(["eval", "--mode", "translate", "--model_name_or_path", str(tiny), "--src", src, "--ref", ref,
                 "--src_lang", "de", "--tgt_lang", "en", "--hypotheses", str(tmp_path / "hyp.en"), "--batch_size",
                 "4", "--max_new_tokens", "8", "--use_cpu"]) == 0
    out = tmp_path / "cands.jsonl"
    assert main(["generate", "--model_name_or_path", str(tiny), "--src", src, "--ref", ref, "--src_lang", "de",
                 "--tgt_lang", "en", "--num_samples", "2", "--include_greedy", "--max_new_tokens", "8",
                 "--batch_size", "4", "--output", str(out), "--use_cpu", "--disable_tqdm"]) == 0
    greedy = read_lines(tmp_path / "cands.greedy.en")
    assert greedy == read_lines(tmp_path / "hyp.en")
    samples = [read_lines(tmp_path / f"cands.sample{k}.en") for k in (1, 2)]
    assert all(len(s) == len(SOURCES) for s in samples)
    rows = read_jsonl(out)
    assert [r["source"] for r in rows] == SOURCES and [r["reference"] for r in rows] == REFERENCES
    assert all(r["candidates"][0] == g and (r["src_lang"], r["tgt_lang"]) == ("de", "en") for r, g in zip(rows, greedy))
    for i, r in enumerate(rows):  # the JSONL's candidates are the line files' answers, duplicates dropped
        answers = [greedy[i], samples[0][i], samples[1][i]]
        assert r["candidates"] == list(dict.fromkeys(answers))
    # the line files are what `cpo prefs --system` reads: each pair's texts are that line's reference or answers
    assert main(["prefs", "--src", src, "--ref", ref, "--system", f"G={tmp_path / 'cands.greedy.en'}", "--system",
                 f"S1={tmp_path / 'cands.sample1.en'}", "--src_lang", "de", "--tgt_lang", "en", "--output",
                 str(tmp_path / "p.jsonl")]) == 0
    texts = {"reference": REFERENCES, "G": greedy, "S1": samples[0]}
    pairs = read_jsonl(tmp_path / "p.jsonl")
    assert pairs and all(p["chosen_system"] == "reference" for p in pairs)  # chrF: the reference scores 100
    for p in pairs:
        i = p["segment_id"] - 1
        assert p["rejected"].strip() == texts[p["rejected_system"]][i].strip() and p["rejected_system"] in ("G", "S1")


def test_a_gguf_model_and_a_chat_prompt(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_llama(path)
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"prompt": [{"role": "user", "content": "Hi there"}]}) + "\n")
    out = tmp_path / "g.jsonl"
    assert main(["generate", "--model_name_or_path", str(path), "--dataset_name", str(data), "--num_samples", "2",
                 "--max_new_tokens", "4", "--output", str(out), "--use_cpu", "--disable_tqdm"]) == 0
    (row,) = read_jsonl(out)
    assert row["prompt"] == [{"role": "user", "content": "Hi there"}] and 1 <= len(row["candidates"]) <= 2


def test_generate_error_paths(tiny, tmp_path, capsys):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"question": "x"}) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": 3}) + "\n")
    base = ["generate", "--model_name_or_path", str(tiny), "--output", str(tmp_path / "o.jsonl"), "--use_cpu"]
    cases = [
        ([], "Give the prompts: --dataset_name"),
        (["--dataset_name", str(data)], "no 'prompt' column .* --prompt_field"),
        (["--dataset_name", str(bad)], r"Row 1, field 'prompt': expected a string"),
        (["--dataset_name", str(data), "--prompt_field", "question", "--temperature", "0"],
         "argument --temperature: 0 is out of range: give a finite number > 0"),
        (["--dataset_name", str(data), "--prompt_field", "question", "--num_samples", "0"],
         "argument --num_samples: 0 is out of range"),
        (["--src", str(data)], "needs --src_lang and --tgt_lang"),
    ]
    for extra, message in cases:
        try:
            assert main(base + extra) == 2, extra
        except SystemExit as exit_:  # argparse refuses a bad value as it parses it, with status 2
            assert exit_.code == 2, extra
        err = capsys.readouterr().err
        assert "Traceback" not in err and re.search(message, err), (extra, err)
    assert not (tmp_path / "o.jsonl").exists()
