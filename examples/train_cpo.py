"""TRL's CPO script on cpo: the same flags and --config YAML, one import changed.

    python examples/train_cpo.py --model_name_or_path Qwen/Qwen2-0.5B-Instruct \
        --dataset_name trl-lib/ultrafeedback_binarized --output_dir Qwen2-0.5B-CPO --logging_steps 10

    python examples/train_cpo.py --config recipe.yaml --learning_rate 5e-6   # a flag overrides the YAML's value

    accelerate launch --num_processes 2 examples/train_cpo.py ... (DDP; see examples/accelerate/ for FSDP, ZeRO)

recipe.yaml holds flag names as keys, and an optional env: mapping set into the environment first, as in TRL:

    env:
      WANDB_PROJECT: cpo
    model_name_or_path: ./my-model
    dataset_name: prefs.jsonl
    use_peft: true
    use_dora: true
    output_dir: out

--model_name_or_path takes a Hub name, a local folder or a .gguf file; --dataset_name a Hub name, a local folder or a
.json/.jsonl/.csv/.parquet file. Every CPOConfig field and every field of TRL's ScriptArguments and ModelConfig is a
flag (--beta, --loss_type, --use_dora, --load_in_4bit, --dataset_streaming, ...). --resume_from_checkpoint resumes.
"""

import argparse
import sys

from cpo.cli.arguments import (
    ModelArguments,
    ScriptArguments,
    check_arguments,
    check_config_keys,
    ignore_bool_buffers,
    model_init_kwargs,
    peft_config_from,
    read_config,
)


def parse(argv: list[str]):
    """``(script_args, training_args, model_args)``: the dataclasses' defaults, then the --config YAML, then flags."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(argv)
    config = read_config(known.config) if known.config else {}  # sets its env: before transformers loads

    from transformers import HfArgumentParser

    from cpo import CPOConfig

    parser = HfArgumentParser((ScriptArguments, CPOConfig, ModelArguments))
    parser.set_defaults(**check_config_keys(config, {a.dest for a in parser._actions}, known.config))
    script_args, training_args, model_args = parser.parse_args_into_dataclasses(rest)
    check_arguments(script_args, model_args, training_args)
    return script_args, training_args, model_args


def main(script_args, training_args, model_args) -> None:
    from cpo import CPOTrainer
    from cpo.cli.loading import load_dataset_dict, load_model_and_tokenizer, select_split

    model, tokenizer = load_model_and_tokenizer(
        model_args.model_name_or_path, init_kwargs=model_init_kwargs(model_args, training_args), merge_adapter=False)
    dataset = load_dataset_dict(script_args.dataset_name, script_args.dataset_config,
                                streaming=script_args.dataset_streaming)
    eval_on = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"

    trainer = CPOTrainer(
        model,
        args=training_args,
        train_dataset=select_split(dataset, script_args.dataset_train_split),
        eval_dataset=select_split(dataset, script_args.dataset_test_split) if eval_on else None,
        processing_class=tokenizer,
        peft_config=peft_config_from(model_args),
    )
    if script_args.ignore_bias_buffers:
        ignore_bool_buffers(trainer.model)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if eval_on:
        trainer.log_metrics("eval", trainer.evaluate())


if __name__ == "__main__":
    from cpo.errors import UsageError

    try:
        parsed = parse(sys.argv[1:])
    except UsageError as err:  # a mistake in the flags or the YAML: one line, no traceback
        print(f"train_cpo.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    main(*parsed)
