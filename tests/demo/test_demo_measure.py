"""Demo measurements: normalisation, exact match by generation, preference accuracy against a naive reference."""

import pytest
import torch
from tiny_gguf import write_tiny_llama
from transformers import LlamaConfig, LlamaForCausalLM

from cpo import CPOConfig, CPOTrainer
from cpo.demo.measure import answer_budget, chrf_score, exact_match, preference_accuracy
from cpo.demo.task import Pair, build_task, normalise
from cpo.gguf import load_gguf_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_llama(path)
    return load_gguf_tokenizer(path)


def tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("text, expected", [
    ("three hundred and forty-seven", "three hundred and forty-seven"),
    ("  Three Hundred  and\nforty-seven. ", "three hundred and forty-seven"),
    ("dreihundertsiebenundvierzig.", "dreihundertsiebenundvierzig"),
    ("three hundred and forty seven", "three hundred and forty seven"),  # the hyphen is part of the answer
    ("347", "347"),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


class ScriptedModel:
    """Stands in for a causal LM: ``generate`` appends a scripted answer to each (left-padded) prompt."""

    def __init__(self, tokenizer, answers: dict[int, str]):
        self.tokenizer, self.answers = tokenizer, answers
        self.training, self.device, self.calls = True, torch.device("cpu"), []

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode

    def parameters(self):
        yield torch.zeros(1)

    def generate(self, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, do_sample, num_beams):
        assert not self.training and not do_sample and num_beams == 1
        assert self.tokenizer.eos_token_id in eos_token_id
        eos_token_id = self.tokenizer.eos_token_id
        assert (attention_mask[:, -1] == 1).all()  # padded on the left: every prompt ends at the last column
        self.calls.append((input_ids.shape[0], max_new_tokens))
        rows = []
        for ids in input_ids:
            number = int(self.tokenizer.decode(ids).split("Write ")[1].split(" ")[0])
            new = self.tokenizer(self.answers[number], add_special_tokens=False)["input_ids"][:max_new_tokens]
            new = new + [eos_token_id] + [pad_token_id] * (max_new_tokens - len(new))
            rows.append(ids.tolist() + new[: max_new_tokens + 1])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows])


def test_exact_match_counts_normalised_hits(tokenizer):
    pairs = [Pair(347, 346, "en"), Pair(12, 13, "en"), Pair(900, 800, "en"), Pair(12, 2, "en")]  # 12 twice
    answers = {347: " Three hundred and forty-seven.", 12: "twelve", 900: "nine hundred and one"}
    model = ScriptedModel(tokenizer, answers)
    score, outs = exact_match(model, tokenizer, pairs, batch_size=2)
    assert score == pytest.approx(2 / 3)  # 347 and 12 right (12 asked once), 900 wrong
    assert [normalise(o) for o in outs] == ["three hundred and forty-seven", "twelve", "nine hundred and one"]
    assert [c[0] for c in model.calls] == [2, 1]  # batches of 2 prompts
    assert model.training  # restored


def test_answer_budget(tokenizer):
    pairs = [Pair(7, 8, "en"), Pair(777, 778, "en")]
    longest = len(tokenizer("seven hundred and seventy-seven", add_special_tokens=False)["input_ids"])
    assert answer_budget(tokenizer, [p.chosen for p in pairs]) == longest + 4


def naive_sequence_logp(model, tokenizer, prompt_messages, answer) -> float:
    """Summed log-prob of the answer's tokens (through the template's end of turn) after the prompt."""
    prompt = tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt_messages + [{"role": "assistant", "content": answer}], tokenize=False)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + c_ids])
    with torch.no_grad():
        logps = model(ids).logits[0].float().log_softmax(-1)
    return sum(logps[len(p_ids) + i - 1, tok].item() for i, tok in enumerate(c_ids))


def test_preference_accuracy_matches_naive_log_probs(tokenizer, tmp_path):
    from datasets import Dataset

    pairs = build_task("en", high=99, test=12, validation=12, seed=0)["test"]
    rows = Dataset.from_list([p.row() for p in pairs])
    model = tiny_model(tokenizer)
    wins = [
        naive_sequence_logp(model, tokenizer, p.row()["prompt"], p.chosen)
        > naive_sequence_logp(model, tokenizer, p.row()["prompt"], p.rejected)
        for p in pairs
    ]
    args = CPOConfig(output_dir=str(tmp_path), per_device_eval_batch_size=5, report_to=[], use_cpu=True,
                     gradient_checkpointing=False, disable_tqdm=True)
    trainer = CPOTrainer(model=model, args=args, train_dataset=rows, eval_dataset=rows, processing_class=tokenizer)
    assert 0 < sum(wins) < len(wins)  # a random model: the check is not a trivial 0 or 1
    assert preference_accuracy(trainer) == pytest.approx(sum(wins) / len(wins))


def test_chrf_score_is_the_mean_sentence_chrf():
    import sacrebleu

    answers = ["Forty-two.", "forty two", "banana"]
    expected = [sacrebleu.sentence_chrf(a, ["forty-two"]).score for a in ("forty-two", "forty two", "banana")]
    assert chrf_score(answers, [42, 42, 42], "en") == pytest.approx(sum(expected) / 3)
    assert expected[0] == 100.0 and expected[2] < expected[1] < 100.0
