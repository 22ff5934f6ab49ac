"""How the files in tests/assets, and the WMT slices the package ships in src/cpo/demo/data, were made from the
project's data folder (run once by a developer; no test runs or imports it, and a user's clone needs nothing but its
output, which is committed).

    python tests/assets/build_assets.py SHARED_DATA               # the folder holding wmt22/, tokenizers/, ...
    python tests/assets/build_assets.py --alma-r-sample           # only alma-r/, from the wmt22/ slice here
    python tests/assets/build_assets.py --mt-slices SHARED_DATA   # only src/cpo/demo/data/*.jsonl

Each slice is cut as it is, with no text changed; README.md in this folder (and src/cpo/demo/data/README.md for the
package's slices) gives the provenance and licence of each.
"""

from __future__ import annotations

import gzip
import json
import lzma
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_DATA = HERE.parents[1] / "src" / "cpo" / "demo" / "data"
WMT_SEGMENTS = 40          # first lines of the WMT'22 de-en test set, its reference and two systems
MQM_SEGMENTS = 25          # first annotated seg_ids of each TED MQM table (and every score up to the last)
HH_RLHF_ROWS = 64          # first rows of Anthropic HH-RLHF harmless-base test (the throughput benchmark's chat data)
WMT22_TEST_EVERY = 8       # the package's WMT'22 de-en test slice: lines 1, 9, 17, ... (every 8th, 248 of 1984)
ZEN_TABLES = ("standard_preference", "standard_implicit_prompt_preference", "conversational_preference",
              "conversational_implicit_prompt_preference")


def head_lines(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    lines = src.read_text(encoding="utf-8").split("\n")[:n]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")


def save_tokenizer(tokenizer, folder: Path) -> None:
    """``save_pretrained``, then tokenizer.json compressed with xz (the tests decompress it into a cache)."""
    tokenizer.save_pretrained(folder)
    raw = folder / "tokenizer.json"
    (folder / "tokenizer.json.xz").write_bytes(lzma.compress(raw.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
    raw.unlink()


def alma_r_sample() -> None:
    """alma-r/de-en.jsonl: the 40 WMT'22 segments above as rows of haoranxu/ALMA-R-Preference's schema. The texts
    are the real source, reference, GPT-4 and ALMA-13B-LoRA translations; the KIWI and XCOMET scores are *made up*
    (seeded uniform draws, rounded), as are the Delta of rows 3 and 4. Row 2 ties all three scores (the rule drops
    it); row 5 ties at the top, row 6 at the bottom."""
    import random

    wmt = HERE / "wmt22"
    texts = [(wmt / rel).read_text(encoding="utf-8").split("\n")[:WMT_SEGMENTS] for rel in (
        "wmt-testset/deen/test.de-en.de", "wmt-testset/deen/test.de-en.en", "GPT-4-1106-preview/deen/test.de-en.en",
        "ALMA-13B-LoRA/deen/test.de-en.en")]
    rng, rows = random.Random(0), []
    for i, (de, en, gpt4, alma) in enumerate(zip(*texts)):
        kiwi = [round(rng.uniform(0.6, 0.95), 4) for _ in range(3)]
        xcomet = [round(rng.uniform(0.6, 0.95), 4) for _ in range(3)]
        if i == 2:
            kiwi, xcomet = [0.8] * 3, [0.8] * 3
        if i == 5:
            kiwi[1] = kiwi[0] = max(kiwi)
            xcomet[1] = xcomet[0] = max(xcomet)
        if i == 6:
            kiwi, xcomet = [0.7, 0.9, 0.7], [0.65, 0.85, 0.65]
        t = {"language_pair": "de-en", "de": de, "en": en, "gpt4_en": gpt4, "alma_en": alma,
             "Delta": {3: 1.0, 4: -1.0}.get(i, 0.0), "required_directions": "de-en"}
        for name, k, x in zip(("ref", "gpt4", "alma"), kiwi, xcomet):
            t[f"{name}_en_kiwi"], t[f"{name}_en_xcomet"] = k, x
            t[f"{name}_en_kiwi_xcomet"] = round((k + x) / 2, 5)
        rows.append({"translation": t})
    out = HERE / "alma-r" / "de-en.jsonl"
    out.parent.mkdir(exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_sentences(records: list[dict], ids: list[int], dst: Path) -> None:
    """``{"id", "de", "en"}`` per line: ``id`` is the 1-based position of the record in its source file."""
    rows = [{"id": i, "de": records[i - 1]["translation"]["de"], "en": records[i - 1]["translation"]["en"]}
            for i in ids]
    dst.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def mt_slices(data: Path) -> None:
    """The package's de-en sentences for ``cpo demo --task mt``: all of WMT'21 dev, and every
    ``WMT22_TEST_EVERY``-th sentence of WMT'22 test (from line 1), both with their human references."""
    folder = data / "wmt-human-written/deen"
    dev = json.loads((folder / "valid.de-en.json").read_text(encoding="utf-8"))
    test = json.loads((folder / "test.de-en.json").read_text(encoding="utf-8"))
    PACKAGE_DATA.mkdir(parents=True, exist_ok=True)
    write_sentences(dev, list(range(1, len(dev) + 1)), PACKAGE_DATA / "wmt21-deen-dev.jsonl")
    write_sentences(test, list(range(1, len(test) + 1, WMT22_TEST_EVERY)), PACKAGE_DATA / "wmt22-deen-test.jsonl")


def main(data: Path) -> None:
    from transformers import AutoTokenizer, GPT2TokenizerFast

    wmt = data / "wmt22"
    for rel in ("wmt-testset/deen/test.de-en.de", "wmt-testset/deen/test.de-en.en",
                "GPT-4-1106-preview/deen/test.de-en.en", "ALMA-13B-LoRA/deen/test.de-en.en"):
        head_lines(wmt / rel, HERE / "wmt22" / rel, WMT_SEGMENTS)
    records = json.loads((data / "wmt-human-written/deen/test.de-en.json").read_text(encoding="utf-8"))
    out = HERE / "wmt-human-written/deen/test.de-en.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records[:WMT_SEGMENTS], ensure_ascii=False) + "\n", encoding="utf-8")

    for pair in ("ende", "zhen"):
        src = data / "wmt-mqm/ted" / pair
        dst = HERE / "wmt-mqm/ted" / pair
        dst.mkdir(parents=True, exist_ok=True)
        lines = (src / f"mqm_ted_{pair}.tsv").read_text(encoding="utf-8").split("\n")
        last = sorted({int(x.split("\t")[3]) for x in lines[1:] if x})[MQM_SEGMENTS - 1]  # the 25th annotated seg_id
        kept = [lines[0]] + [x for x in lines[1:] if x and int(x.split("\t")[3]) <= last]
        (dst / f"mqm_ted_{pair}.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
        lines = (src / f"mqm_ted_{pair}.avg_seg_scores.tsv").read_text(encoding="utf-8").split("\n")
        kept = [lines[0]] + [x for x in lines[1:] if x.strip() and int(x.split()[-1]) <= last]
        (dst / f"mqm_ted_{pair}.avg_seg_scores.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")

    for table in ZEN_TABLES:
        src = data / "chat-preference/trl-zen" / f"{table}.jsonl"
        (HERE / "trl-zen").mkdir(exist_ok=True)
        (HERE / "trl-zen" / f"{table}.jsonl").write_bytes(src.read_bytes())

    hh = "chat-preference/hh-rlhf/harmless-base/test.jsonl.gz"
    with gzip.open(data / hh, "rt", encoding="utf-8") as f:
        rows = [next(f) for _ in range(HH_RLHF_ROWS)]
    (HERE / hh).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(HERE / hh, "wt", encoding="utf-8", compresslevel=9) as f:
        f.writelines(rows)

    gpt2 = data / "tokenizers/gpt2"
    save_tokenizer(GPT2TokenizerFast(str(gpt2 / "vocab.json"), str(gpt2 / "merges.txt")), HERE / "tokenizers/gpt2")
    qwen2 = AutoTokenizer.from_pretrained(str(data / "tokenizers/qwen2"), gguf_file="ggml-vocab-qwen2.gguf")
    save_tokenizer(qwen2, HERE / "tokenizers/qwen2")
    alma_r_sample()
    mt_slices(data)


if __name__ == "__main__":
    if sys.argv[1:] == ["--alma-r-sample"]:  # from the WMT'22 slice already here: no data folder needed
        alma_r_sample()
    elif len(sys.argv) == 3 and sys.argv[1] == "--mt-slices":
        mt_slices(Path(sys.argv[2]))
    elif len(sys.argv) != 2:
        sys.exit("usage: python tests/assets/build_assets.py SHARED_DATA | --alma-r-sample | --mt-slices SHARED_DATA")
    else:
        main(Path(sys.argv[1]))
