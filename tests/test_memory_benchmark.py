"""benchmarks/memory.py's batch of translation pairs and its token count, without the Gemma file."""

import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import memory  # noqa: E402
from common import word_tokenizer  # noqa: E402


def test_mt_rows_pair_each_reference_with_the_next_sentences():
    """Pair i: sentence i's ALMA prompt and reference, against sentence i+1's reference (the WMT'21 dev lines 1-3)."""
    rows = memory.mt_rows(2)
    assert rows[0]["prompt"].startswith("Translate this from German to English:\nGerman: Paar in Hundepark in ")
    assert rows[0]["prompt"].endswith(" - RT USA News\nEnglish:")
    assert rows[0]["chosen"] == " Couple MACED at California dog park for not wearing face masks while having lunch " \
                                "(VIDEO) - RT USA News"
    assert rows[0]["rejected"] == rows[1]["chosen"] == " There's mask-shaming and then there's full on assault."
    assert len(rows) == 2 and rows[1]["rejected"] != rows[1]["chosen"]


def test_sequence_lengths_count_bos_and_eos():
    """rows() makes every sequence exactly ``seq`` tokens once BOS and EOS are added: seq/2 - 1 prompt words,
    seq/2 - 1 answer words, BOS, EOS. The word tokenizer adds neither itself."""
    tok = word_tokenizer(1000)
    assert memory.sequence_lengths(tok, memory.rows(1000, pairs=3, seq=20)) == [20] * 6
    assert memory.sequence_lengths(tok, [{"prompt": "w5 w6", "chosen": " w7", "rejected": " w8 w9"}]) == [5, 6]
