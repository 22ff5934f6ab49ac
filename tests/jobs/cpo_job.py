"""A small real training job for the multi-process and resume tests: run with python or accelerate launch.

Writes ``<out>/final/`` (weights), ``<out>/logs.json`` (log history, main process) and, with --kill_at, kills itself
with SIGKILL at the end of that optimiser step, as a crashed or pre-empted job would die.
"""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from helpers import tiny_qwen2, zen  # noqa: E402
from transformers import AutoTokenizer, TrainerCallback  # noqa: E402

from cpo import CPOConfig, CPOTrainer  # noqa: E402


class KillAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--max_steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--accumulation", type=int, default=1)
    p.add_argument("--save_steps", type=int, default=0)
    p.add_argument("--kill_at", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--optim", default="adamw_torch")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--layout", default="padded", choices=["padded", "packed", "shared", "both"])
    p.add_argument("--chunked", type=int, default=1)
    p.add_argument("--loss_type", default="sigmoid")
    p.add_argument("--accelerate_config", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    packed, shared = {"padded": (False, False), "packed": (True, False), "shared": (False, True), "both": (True, True)}[a.layout]
    args = CPOConfig(
        output_dir=a.out, per_device_train_batch_size=a.batch, gradient_accumulation_steps=a.accumulation,
        max_steps=a.max_steps, logging_steps=1, learning_rate=a.lr, optim=a.optim, report_to="none", seed=0,
        save_strategy="steps" if a.save_steps else "no", save_steps=a.save_steps or 500, disable_tqdm=True,
        padding_free=packed, prefix_sharing=shared, chunked_logits=bool(a.chunked), loss_type=a.loss_type,
        dataloader_drop_last=True,
    )
    callbacks = [KillAt(a.kill_at)] if a.kill_at else []
    trainer = CPOTrainer(model=tiny_qwen2(len(tok)), args=args, processing_class=tok,
                         train_dataset=zen("standard_preference"), callbacks=callbacks)
    trainer.train(resume_from_checkpoint=True if a.resume else None)
    trainer.save_model(f"{a.out}/final")
    if trainer.is_world_process_zero():
        Path(a.out, "logs.json").write_text(json.dumps(trainer.state.log_history))
        collator = trainer.data_collator
        Path(a.out, "setup.json").write_text(json.dumps({
            "distributed_type": str(trainer.accelerator.distributed_type), "processes": trainer.accelerator.num_processes,
            "fsdp": bool(trainer.is_fsdp_enabled), "chunked": trainer.routes.head is not None,
            "packed": collator.packed, "shared": collator.shared_prompt,
            "sharded_head": type(trainer.model.lm_head.weight).__name__ == "DTensor"}))


if __name__ == "__main__":
    main()
