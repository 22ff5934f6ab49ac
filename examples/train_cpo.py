"""TRL's CPO quick start as a script, on cpo: the same flags, one import changed.

    python examples/train_cpo.py --model_name_or_path Qwen/Qwen2-0.5B-Instruct \
        --dataset_name trl-lib/ultrafeedback_binarized --output_dir Qwen2-0.5B-CPO --logging_steps 10

    accelerate launch --num_processes 2 examples/train_cpo.py ... (DDP; see examples/accelerate/ for FSDP, ZeRO)

    python examples/train_cpo.py --model_name_or_path ./my-model --dataset_name prefs.jsonl \
        --num_train_epochs 1 --use_peft --lora_r 16 --output_dir out

--model_name_or_path takes a Hub name, a local folder or a .gguf file; --dataset_name a Hub name, a local folder or a
.json/.jsonl/.csv/.parquet file. Every CPOConfig field is a flag (--beta, --loss_type, --cpo_alpha, ...).
"""

from transformers import HfArgumentParser

from cpo import CPOConfig, CPOTrainer
from cpo.cli.loading import load_dataset_dict, load_model_and_tokenizer, select_split
from cpo.cli.train import ModelArguments, ScriptArguments, peft_config_from


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, CPOConfig, ModelArguments))
    script_args, training_args, model_args = parser.parse_args_into_dataclasses()

    model, tokenizer = load_model_and_tokenizer(
        model_args.model_name_or_path, dtype=model_args.dtype, attn_implementation=model_args.attn_implementation,
        trust_remote_code=training_args.trust_remote_code, merge_adapter=False,
    )
    dataset = load_dataset_dict(script_args.dataset_name, script_args.dataset_config)
    eval_on = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"

    trainer = CPOTrainer(
        model,
        args=training_args,
        train_dataset=select_split(dataset, script_args.dataset_train_split),
        eval_dataset=select_split(dataset, script_args.dataset_test_split) if eval_on else None,
        processing_class=tokenizer,
        peft_config=peft_config_from(model_args),
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)
    if eval_on:
        trainer.log_metrics("eval", trainer.evaluate())


if __name__ == "__main__":
    main()
