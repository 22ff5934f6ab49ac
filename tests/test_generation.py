"""Generation for every caller: batched greedy equals one prompt at a time, sampling is reproducible and returns
the asked number of samples, prompts are the training prompts, the model's mode and the global RNG are left alone."""

import pytest
import torch
from helpers import naive_greedy, tiny_qwen2

from cpo.generation import (
    Decoding,
    generate_candidates,
    generate_texts,
    sample_candidates,
    stop_token_ids,
    unique_candidates,
)
from cpo.rows import DatasetFormat, RowError
from cpo.tokenization import TokenizeSpec, encode_prompt_values, encode_prompts, tokenize_batch

PROMPTS = ["The house is", "A", "Translate this from German to English:\nGerman: Das Haus ist alt.\nEnglish:",
           "Zen of Python, line two:"]


@pytest.fixture(scope="module")
def model(gpt2_tokenizer):
    return tiny_qwen2(len(gpt2_tokenizer), seed=3).eval()


def test_batched_greedy_equals_one_prompt_at_a_time(model, gpt2_tokenizer):
    ids = encode_prompts(gpt2_tokenizer, PROMPTS, templated=False)
    batched = generate_texts(model, gpt2_tokenizer, ids, Decoding(max_new_tokens=8), batch_size=3, progress=False)
    assert [t[0] for t in batched] == [naive_greedy(model, gpt2_tokenizer, x, 8) for x in ids]


def test_sampling_same_seed_same_texts_and_the_asked_number(model, gpt2_tokenizer):
    ids = encode_prompts(gpt2_tokenizer, PROMPTS, templated=False)
    decoding = Decoding(max_new_tokens=6, do_sample=True, num_samples=3, temperature=1.0, seed=7)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = generate_texts(model, gpt2_tokenizer, ids, decoding, batch_size=6, progress=False)
    assert torch.rand(1) == before  # the global RNG is where the caller left it
    again = generate_texts(model, gpt2_tokenizer, ids, decoding, batch_size=6, progress=False)
    other = generate_texts(model, gpt2_tokenizer, ids, Decoding(max_new_tokens=6, do_sample=True, num_samples=3,
                                                                seed=8), batch_size=6, progress=False)
    assert first == again and first != other
    assert [len(t) for t in first] == [3] * len(PROMPTS)
    assert len({s for t in first for s in t}) > len(PROMPTS)  # samples differ (random model, temperature 1)


def test_candidates_greedy_first_and_duplicates_counted(model, gpt2_tokenizer):
    ids = encode_prompts(gpt2_tokenizer, PROMPTS, templated=False)
    decoding = Decoding(max_new_tokens=6, do_sample=True, num_samples=2, seed=0)
    raw = sample_candidates(model, gpt2_tokenizer, ids, decoding, include_greedy=True, batch_size=4, progress=False)
    greedy = generate_texts(model, gpt2_tokenizer, ids, Decoding(max_new_tokens=6), batch_size=4, progress=False)
    assert [r[0] for r in raw] == [g[0] for g in greedy] and all(len(r) == 3 for r in raw)
    kept, dropped = unique_candidates([["a", " a ", "b"], ["c"]])
    assert kept == [["a", "b"], ["c"]] and dropped == 1
    assert unique_candidates([[" x", "x "]], clean=lambda t: t) == ([[" x"]], 1)
    with pytest.raises(ValueError, match="do_sample=True"):
        sample_candidates(model, gpt2_tokenizer, ids, Decoding(), progress=False)


def test_generation_leaves_the_training_mode_as_it_was(model, gpt2_tokenizer):
    ids = encode_prompts(gpt2_tokenizer, PROMPTS[:1], templated=False)
    model.train()
    generate_texts(model, gpt2_tokenizer, ids, Decoding(max_new_tokens=2), progress=False)
    assert model.training
    model.eval()
    generate_texts(model, gpt2_tokenizer, ids, Decoding(max_new_tokens=2), progress=False)
    assert not model.training


def test_prompt_values_are_the_training_prompts(smollm2_tokenizer, gpt2_tokenizer):
    """A dataset prompt (text, or a conversation) is encoded exactly as the trainer encodes the row's prompt."""
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write 7 in English words."}]
    for tok, prompt, fmt in ((gpt2_tokenizer, "2 + 2 =", DatasetFormat(False, True)),
                             (smollm2_tokenizer, chat, DatasetFormat(True, True))):
        answer = " 4" if isinstance(prompt, str) else [{"role": "assistant", "content": "seven"}]
        row = {"prompt": [prompt], "chosen": [answer], "rejected": [answer]}
        trained = tokenize_batch(row, [0], tokenizer=tok, fmt=fmt, spec=TokenizeSpec())
        assert encode_prompt_values(tok, [prompt]) == trained["prompt_input_ids"]
    assert encode_prompt_values(gpt2_tokenizer, [""])[0] == [gpt2_tokenizer.bos_token_id]
    with pytest.raises(RowError, match="Row 1, field 'prompt'"):
        encode_prompt_values(gpt2_tokenizer, ["ok", None])
    with pytest.raises(RowError, match="no chat template"):
        encode_prompt_values(gpt2_tokenizer, [chat])


def test_stop_ids_include_the_chat_templates_end_of_turn(smollm2_tokenizer, model, gpt2_tokenizer):
    class Stub:
        generation_config = None

    assert smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(Stub(), smollm2_tokenizer)
    assert stop_token_ids(Stub(), gpt2_tokenizer) == [gpt2_tokenizer.eos_token_id]


def test_generate_candidates_for_conversations(smollm2_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    prompts = [[{"role": "user", "content": f"Write {n} in English words."}] for n in (3, 41)]
    decoding = Decoding(max_new_tokens=4, do_sample=True, num_samples=3, seed=1)
    cands, dropped = generate_candidates(model, smollm2_tokenizer, prompts, decoding, include_greedy=True,
                                         batch_size=8, progress=False)
    assert len(cands) == 2 and sum(map(len, cands)) + dropped == 8
    assert all(c == c.strip() for cs in cands for c in cs)  # conversations' answers are stripped
