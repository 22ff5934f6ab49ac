"""`cpo eval`: BLEU/chrF exactly as sacrebleu, batched generation equal to a naive greedy loop, preference metrics
equal to log-probs computed by hand."""

import json
import re

import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from helpers import asset, naive_greedy, preference_rows

from cpo.cli import main
from cpo.errors import UsageError
from cpo.files import read_lines
from cpo.mt.prompts import build_prompts
from cpo.mt.scores import corpus_scores
from cpo.mt.translate import clean_hypothesis
from cpo.rows import DatasetFormat
from cpo.tokenization import TokenizeSpec, encode_prompts, tokenize_batch

SOURCES = ["Das Haus ist alt.", "Ja.", "Die Ware hat unter 20 Euro gekostet, sagte er gestern Abend.", "Nein, danke.",
           "Wir sehen uns morgen."]
REFERENCES = ["The house is old.", "Yes.", "The goods cost less than 20 euros, he said last night.", "No, thanks.",
              "See you tomorrow."]


def write_lines(path, lines):
    path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return str(path)


def test_scoring_gpt4_wmt22_deen_equals_sacrebleu(tmp_path, capsys):
    hyp = asset("wmt22", "GPT-4-1106-preview", "deen", "test.de-en.en")
    ref = asset("wmt22", "wmt-testset", "deen", "test.de-en.en")
    out = tmp_path / "scores.json"
    assert main(["eval", "--mode", "translate", "--hypotheses", str(hyp), "--ref", str(ref), "--tgt_lang", "en",
                 "--output", str(out)]) == 0
    hyps = hyp.read_text(encoding="utf-8").split("\n")[:-1]
    refs = ref.read_text(encoding="utf-8").split("\n")[:-1]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert list(result) == ["mode", "model", "inputs", "settings", "metrics"]  # the layout of both modes
    assert result["mode"] == "translate" and result["model"] is None
    metrics = result["metrics"]
    assert metrics["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert metrics["chrf"] == sacrebleu.corpus_chrf(hyps, [refs]).score
    assert result["inputs"]["segments"] == len(hyps) == 40 and metrics["empty_hypotheses"] == 0
    assert "tok:13a" in metrics["bleu_signature"]
    assert f"BLEU {metrics['bleu']:.2f}" in capsys.readouterr().out
    # the same references read from the JSON test set
    js = asset("wmt-human-written", "deen", "test.de-en.json")
    assert main(["eval", "--mode", "translate", "--hypotheses", str(hyp), "--ref", str(js), "--tgt_lang", "en",
                 "--output", str(tmp_path / "js.json")]) == 0
    assert json.loads((tmp_path / "js.json").read_text())["metrics"]["bleu"] == metrics["bleu"]
    capsys.readouterr()
    # without --output the scores are printed, and nothing is written
    assert main(["eval", "--mode", "translate", "--hypotheses", str(hyp), "--ref", str(ref), "--tgt_lang", "en"]) == 0
    assert "written to" not in capsys.readouterr().out and not list(hyp.parent.glob("*.json"))


def test_chinese_bleu_uses_sacrebleus_zh_tokenizer():
    hyps, refs = ["我们今天去公园。", "他很好"], ["我们今天去了公园。", "他很好。"]
    scores = corpus_scores(hyps, refs, "zh")
    assert scores["bleu"] == sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score
    assert "tok:zh" in scores["bleu_signature"]


def test_batched_translation_equals_naive_greedy(tiny, tmp_path, gpt2_tokenizer):
    from transformers import AutoModelForCausalLM

    src, ref = write_lines(tmp_path / "s.de", SOURCES), write_lines(tmp_path / "r.en", REFERENCES)
    hyp_path, out = tmp_path / "out" / "hyp.en", tmp_path / "out" / "scores.json"
    assert main(["eval", "--mode", "translate", "--model_name_or_path", str(tiny), "--src", src, "--ref", ref,
                 "--src_lang", "de", "--tgt_lang", "en", "--hypotheses", str(hyp_path), "--batch_size", "2",
                 "--max_new_tokens", "12", "--output", str(out), "--use_cpu"]) == 0
    hyps = read_lines(hyp_path)
    model, tok = AutoModelForCausalLM.from_pretrained(tiny).eval(), gpt2_tokenizer
    expected = []
    for s in SOURCES:
        prompt = f"Translate this from German to English:\nGerman: {s}\nEnglish:"
        ids = [tok.bos_token_id, *tok(prompt)["input_ids"]]
        expected.append(clean_hypothesis(naive_greedy(model, tok, ids, 12), stop_at_newline=True))
    assert hyps == expected
    result = json.loads(out.read_text())
    assert result["metrics"]["bleu"] == sacrebleu.corpus_bleu(hyps, [REFERENCES]).score
    assert result["metrics"]["chrf"] == sacrebleu.corpus_chrf(hyps, [REFERENCES]).score
    assert result["settings"]["template"] == "alma" and result["inputs"]["segments"] == 5
    assert result["model"] == str(tiny) and result["inputs"]["sources"] == src


def test_generation_prompts_match_training_prompts(gpt2_tokenizer):
    """The ids a model is prompted with at test time are the prompt ids the trainer trains on."""
    tok = gpt2_tokenizer
    prompt = build_prompts(["Das Haus."], "de", "en", "alma", tok)[0]
    row = {"prompt": [prompt], "chosen": [" The house."], "rejected": [" A house."]}
    trained = tokenize_batch(row, [0], tokenizer=tok, fmt=DatasetFormat(False, True), spec=TokenizeSpec())
    assert encode_prompts(tok, [prompt], templated=False)[0] == trained["prompt_input_ids"][0]
    assert encode_prompts(tok, [prompt], templated=False)[0][0] == tok.bos_token_id


def test_chat_template_prompts_match_training_prompts(smollm2_tokenizer, gpt2_tokenizer):
    tok = smollm2_tokenizer
    prompt = build_prompts(["Das Haus."], "de", "en", "chat", tok)[0]
    assert prompt.endswith("<|im_start|>assistant\n") and "German: Das Haus.\nEnglish:" in prompt
    user = [{"role": "user", "content": "Translate this from German to English:\nGerman: Das Haus.\nEnglish:"}]
    row = {"prompt": [user], "chosen": [[{"role": "assistant", "content": "The house."}]],
           "rejected": [[{"role": "assistant", "content": "A house."}]]}
    trained = tokenize_batch(row, [0], tokenizer=tok, fmt=DatasetFormat(True, True), spec=TokenizeSpec())
    assert encode_prompts(tok, [prompt], templated=True)[0] == trained["prompt_input_ids"][0]
    with pytest.raises(UsageError, match="has none"):
        build_prompts(["x"], "de", "en", "chat", gpt2_tokenizer)


def test_clean_hypothesis():
    assert clean_hypothesis(" The house.\nGerman: Das", True) == "The house."
    assert clean_hypothesis("\nThe house.", True) == ""
    assert clean_hypothesis(" Line one.\nLine two. ", False) == "Line one.\nLine two."


def hand_logps(model, tok, rows):
    """Summed log-probs of each completion + EOS given BOS + prompt, computed position by position."""
    out = []
    with torch.no_grad():
        for row in rows:
            prompt = [tok.bos_token_id, *tok(row["prompt"])["input_ids"]]
            pair = []
            for side in ("chosen", "rejected"):
                completion = [*tok(row[side])["input_ids"], tok.eos_token_id]
                ids = torch.tensor([prompt + completion])
                logp = F.log_softmax(model(ids).logits[0].double(), -1)
                pair.append(sum(float(logp[len(prompt) - 1 + t, c]) for t, c in enumerate(completion)))
                pair.append(len(completion))
            out.append(pair)  # [chosen_logp, chosen_tokens, rejected_logp, rejected_tokens]
    return torch.tensor(out, dtype=torch.float64)


def test_preference_eval_equals_hand_computed_logps(tiny, tmp_path, gpt2_tokenizer):
    from transformers import AutoModelForCausalLM

    rows = preference_rows(6)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tiny / "cpo_train_config.yaml").write_text("beta: 0.5\nlearning_rate: 0.1\n", encoding="utf-8")
    out = tmp_path / "pref.json"
    try:
        assert main(["eval", "--mode", "preference", "--model_name_or_path", str(tiny), "--dataset_name", str(data),
                     "--output", str(out), "--use_cpu"]) == 0
    finally:
        (tiny / "cpo_train_config.yaml").unlink()
    result = json.loads(out.read_text())
    assert list(result) == ["mode", "model", "inputs", "settings", "metrics"] and result["mode"] == "preference"
    m = result["metrics"]
    t = hand_logps(AutoModelForCausalLM.from_pretrained(tiny).eval(), gpt2_tokenizer, rows)
    chosen, rejected, beta = t[:, 0], t[:, 2], 0.5
    assert result["settings"] == {"beta": 0.5} and result["inputs"]["split"] == "train"
    assert result["inputs"]["pairs"] == 6
    assert m["logps/chosen"] == pytest.approx(float(chosen.mean()), rel=1e-5)
    assert m["logps/rejected"] == pytest.approx(float(rejected.mean()), rel=1e-5)
    assert m["rewards/margins"] == pytest.approx(beta * float((chosen - rejected).mean()), rel=1e-4, abs=1e-5)
    assert m["rewards/accuracies"] == float((chosen > rejected).double().mean())
    nll = -float(chosen.sum() / t[:, 1].sum())
    assert m["nll_loss"] == pytest.approx(nll, rel=1e-5)
    loss = float(F.softplus(-beta * (chosen - rejected)).mean()) + nll  # Eq. 4: L_prefer + cpo_alpha * L_NLL
    assert m["loss"] == pytest.approx(loss, rel=1e-5)
    # a flag overrides the saved setting: margins scale with beta
    assert main(["eval", "--mode", "preference", "--model_name_or_path", str(tiny), "--dataset_name", str(data),
                 "--beta", "0.25", "--dataset_split", "train[:3]", "--output", str(out), "--use_cpu"]) == 0
    m = json.loads(out.read_text())["metrics"]
    assert m["rewards/margins"] == pytest.approx(0.25 * float((chosen - rejected)[:3].mean()), rel=1e-4, abs=1e-5)


def test_eval_error_paths(tiny, tmp_path, capsys):
    src, ref = write_lines(tmp_path / "s.de", SOURCES), write_lines(tmp_path / "r.en", REFERENCES)
    short = write_lines(tmp_path / "h.en", REFERENCES[:3])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "good": " b", "rejected": " c"}\n', encoding="utf-8")
    t = ["eval", "--mode", "translate"]
    p = ["eval", "--mode", "preference", "--model_name_or_path", str(tiny)]
    cases = [
        (t + ["--hypotheses", short], "needs --ref"),
        (t + ["--hypotheses", short, "--ref", ref], r"hypotheses .* has 3 segments but the reference .* has 5"),
        (t + ["--hypotheses", str(tmp_path / "none.en"), "--ref", ref], r"none.en' does not exist"),
        (t + ["--model_name_or_path", str(tiny), "--ref", ref, "--hypotheses", "x"], "needs --src, --src_lang"),
        (t + ["--model_name_or_path", str(tmp_path / "nomodel"), "--src", src, "--ref", ref, "--src_lang", "de",
              "--tgt_lang", "en", "--hypotheses", "x"], "nomodel' does not exist"),
        (t + ["--model_name_or_path", str(tiny), "--src", src, "--ref", ref, "--src_lang", "de", "--tgt_lang", "en",
              "--hypotheses", str(tmp_path / "x"), "--template", "chat"], "chat template"),
        (t + ["--hypotheses", short, "--ref", ref, "--dataset_name", "x"], r"--dataset_name belong\(s\) to --mode "
                                                                            "preference"),
        (p, "needs --dataset_name"),
        (p + ["--dataset_name", str(tmp_path / "none.jsonl")], "does not exist"),
        (p + ["--dataset_name", str(bad)], "no 'chosen' column"),
        (p + ["--dataset_name", str(bad), "--dataset_split", "test"], "no split 'test'; it has: train"),
        (p + ["--dataset_name", str(bad), "--src", src], r"--src belong\(s\) to --mode translate"),
        (t + ["--hypotheses", short, "--ref", ref, "--limit", "0"], "argument --limit: 0 is out of range"),
    ]
    for argv, message in cases:
        try:
            assert main(argv) == 2, argv
        except SystemExit as exit_:  # argparse refuses a bad value as it parses it, with status 2
            assert exit_.code == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and re.search(message, err), (argv, err)
