"""`cpo generate`: candidate answers from a model, for preference pairs (the CPO paper's recipe on your own model).

Prompts come from a dataset (a ``prompt`` column of text or messages, in any format ``cpo train`` reads) or are
sentences to translate (``--src``, with the ALMA prompt or the chat template, as ``cpo eval`` builds them). Each gets
``--num_samples`` sampled answers, and with ``--include_greedy`` the greedy one first; duplicates are dropped and
counted. The JSONL output (one row per prompt: ``prompt``, ``candidates`` and the input's other fields) is what
``cpo prefs --candidates`` reads; for translations, one line-aligned file per sample index is written too, for
``cpo prefs --system``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .common import (
    add_model_arguments,
    add_output_argument,
    add_progress_argument,
    add_translation_arguments,
    number,
    seed_argument,
    subcommand_parser,
)

EXAMPLES = """\
examples (M is your model: a folder, a Hub name or a .gguf file; the other files are your own):
  # 4 samples per prompt of a prompt dataset (a 'prompt' column of text or messages)
  cpo generate --model_name_or_path M --dataset_name prompts.jsonl --num_samples 4 --temperature 0.8 --seed 0 \\
      --max_new_tokens 64 --output candidates.jsonl
  # translations of WMT sources, the greedy one included; also writes cands.sample1.en ... and cands.greedy.en
  cpo generate --model_name_or_path M --src test.de-en.de --src_lang de --tgt_lang en --ref test.de-en.en \\
      --num_samples 4 --include_greedy --output cands.jsonl
  # then: score them (here with your own quality model, a Python function) and build pairs
  cpo prefs --candidates cands.jsonl --scorer my_qe.py:score --output prefs.jsonl
"""


def build_parser():
    p = subcommand_parser("generate", "Sample candidate answers from a model, for preference pairs (CPO, arXiv "
                          "2401.08417, section 3): one JSONL row per prompt with its candidates.", EXAMPLES)
    p.add_argument("--model_name_or_path", required=True, help="model folder, Hub name, .gguf file, or PEFT adapter "
                   "folder (merged into its base model)")
    add_output_argument(p, "JSONL file to write (read by `cpo prefs --candidates`)", required=True)
    add_model_arguments(p)
    g = p.add_argument_group("prompts from a dataset")
    g.add_argument("--dataset_name", help="a .json/.jsonl/.csv/.parquet file, folder or Hub name with a prompt column")
    g.add_argument("--dataset_config", help="configuration of a Hub dataset")
    g.add_argument("--dataset_split", default="train", help="split, may be sliced: 'train[:100]'")
    g.add_argument("--prompt_field", default="prompt", help="the column of prompts (text or messages)")
    g = p.add_argument_group("sentences to translate")
    add_translation_arguments(g, reference="references kept with each row (and, for `cpo prefs`, the reference "
                              "candidate)")
    g = p.add_argument_group("decoding")
    g.add_argument("--num_samples", type=number(int, 1), default=4, help="sampled answers per prompt")
    g.add_argument("--include_greedy", action="store_true", help="add the greedy answer (first) to the samples")
    g.add_argument("--temperature", type=number(float, 0, above=True), default=1.0, help="sampling temperature")
    g.add_argument("--top_p", type=number(float, 0, 1, above=True), default=1.0, help="nucleus sampling (1.0: off)")
    g.add_argument("--top_k", type=number(int, 0), default=0, help="top-k sampling (0: off)")
    g.add_argument("--max_new_tokens", type=number(int, 1), default=256, help="most tokens generated per answer")
    g.add_argument("--batch_size", type=number(int, 1), default=16, help="sequences decoded at once (prompts x samples)")
    seed_argument(g, "the same seed, batch size and machine give the same file")
    g.add_argument("--limit", type=number(int, 1), help="use only the first N prompts")
    add_progress_argument(g)
    return p


def _decoding(args):
    from ..generation import Decoding

    try:
        return Decoding(max_new_tokens=args.max_new_tokens, do_sample=True, num_samples=args.num_samples,
                        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _dataset_rows(args) -> list[dict]:
    from .loading import load_dataset_split

    ds = load_dataset_split(args.dataset_name, args.dataset_config, args.dataset_split)
    if args.prompt_field not in ds.column_names:
        raise UsageError(f"The dataset {args.dataset_name!r} has no {args.prompt_field!r} column (columns: "
                         f"{', '.join(ds.column_names)}). Name the prompt column with --prompt_field.")
    if "candidates" in ds.column_names:
        raise UsageError(f"The dataset {args.dataset_name!r} already has a 'candidates' column; rename it.")
    return ds.to_list()[: args.limit] if args.limit else ds.to_list()


def _translation_rows(args) -> list[dict]:
    from ..files import check_aligned
    from ..mt.prompts import alma_prompt
    from ..mt.segments import read_segments

    if args.src_lang is None or args.tgt_lang is None:
        raise UsageError("Translating needs --src_lang and --tgt_lang (for the prompt).")
    sources = read_segments(args.src, field=args.src_field, lang=args.src_lang, what="source")
    refs = read_segments(args.ref, field=args.ref_field, lang=args.tgt_lang, what="reference") if args.ref else None
    if refs is not None:
        check_aligned([(f"source {args.src}", sources), (f"reference {args.ref}", refs)])
    n = min(len(sources), args.limit or len(sources))
    return [{"id": i + 1, "source": sources[i], **({"reference": refs[i]} if refs else {}),
             "src_lang": args.src_lang, "tgt_lang": args.tgt_lang, "template": args.template,
             "prompt": alma_prompt(sources[i], args.src_lang, args.tgt_lang)} for i in range(n)]


def run(args) -> int:
    """Load the model, sample the candidates, write the JSONL (and the per-sample line files for translations)."""
    from ..files import write_jsonl
    from ..generation import unique_candidates
    from ..rows import RowError
    from .loading import load_for_inference

    if (args.dataset_name is None) == (args.src is None):
        raise UsageError("Give the prompts: --dataset_name (a prompt column) or --src (sentences to translate).")
    decoding = _decoding(args)
    rows = _translation_rows(args) if args.src else _dataset_rows(args)
    model, tokenizer = load_for_inference(args.model_name_or_path, dtype=args.dtype,
                                          trust_remote_code=args.trust_remote_code, use_cpu=args.use_cpu)
    progress = not args.disable_tqdm
    if args.src:
        from ..mt.translate import translation_candidates

        answers = translation_candidates(model, tokenizer, [r["source"] for r in rows], decoding,
                                         src_lang=args.src_lang, tgt_lang=args.tgt_lang, template=args.template,
                                         include_greedy=args.include_greedy, batch_size=args.batch_size,
                                         progress=progress)
        candidates, dropped = unique_candidates(answers)
    else:
        from ..generation import generate_candidates

        try:
            candidates, dropped = generate_candidates(
                model, tokenizer, [r[args.prompt_field] for r in rows], decoding, include_greedy=args.include_greedy,
                batch_size=args.batch_size, progress=progress, tools=[r.get("tools") for r in rows],
                template_kwargs=[r.get("chat_template_kwargs") for r in rows])
        except RowError as err:
            raise UsageError(str(err)) from None
    out = [{**row, "candidates": cands} for row, cands in zip(rows, candidates)]
    written = [str(args.output)]
    write_jsonl(args.output, out)
    if args.src:
        written += _write_sample_files(args, answers)
    total = len(rows) * (decoding.num_samples + args.include_greedy)
    print(f"{len(rows)} prompts, {total} answers ({decoding.num_samples} samples"
          f"{' + greedy' if args.include_greedy else ''} each): {total - dropped} candidates kept, {dropped} "
          f"duplicates dropped\nwritten to {', '.join(written)}")
    return 0


def _write_sample_files(args, answers: list[list[str]]) -> list[str]:
    """``<output stem>.greedy.<tgt>`` and ``<output stem>.sample<k>.<tgt>``: answer ``k`` of every source, line by
    line (duplicates included, so every file has one line per source)."""
    from ..files import write_lines

    stem = Path(args.output).with_suffix("")
    names = (["greedy"] if args.include_greedy else []) + [f"sample{k}" for k in range(1, args.num_samples + 1)]
    paths = []
    for j, name in enumerate(names):
        path = stem.parent / f"{stem.name}.{name}.{args.tgt_lang}"
        write_lines(path, [a[j] for a in answers])
        paths.append(str(path))
    return paths
