"""HF Trainer + GPT2LMHeadModel (built from a config) on a fairseq mmap dir; prints one JSON line per update.

Run as `python benchmarks/peers/hf_trainer_run.py DATA_DIR --max-update N [--bf16]` (a file, not
`-m peers...`: benchmarks/ on the path would let benchmarks/kernels.py shadow the `kernels` package that
transformers imports); `deepspeed --num_gpus 2 benchmarks/peers/hf_trainer_run.py ... --zero-stage 2`
runs it as 2 ranks of DeepSpeed ZeRO-2 (the Trainer's `deepspeed=` argument; --batch-size stays the global
batch, split over the ranks).
The model mirrors the fairseq/bigseq runs: learned positions, pre-norm, GELU, tied embeddings,
dropout 0.1 on embeddings and residuals, none on attention; Adam (AdamW with weight decay 0),
constant LR, no gradient clipping (fairseq's and bigseq's default).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from corpus import read_token_stream  # beside this file
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments


class TokenBlocks(torch.utils.data.Dataset):
    """Consecutive non-overlapping windows of the token stream (fairseq's --sample-break-mode none)."""

    def __init__(self, stream, tokens_per_sample: int):
        self.stream, self.tokens_per_sample = stream, tokens_per_sample

    def __len__(self) -> int:
        return len(self.stream) // self.tokens_per_sample

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = index * self.tokens_per_sample
        block_T = torch.from_numpy(self.stream[start:start + self.tokens_per_sample].astype("int64"))
        return {"input_ids": block_T, "labels": block_T}


class PrintUpdates(TrainerCallback):
    """One JSON line per optimizer step, flushed, so the parent can time updates as they happen."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            print(json.dumps({"num_updates": state.global_step}), flush=True)


def zero_config(stage: int) -> dict:
    """DeepSpeed config for the Trainer: 'auto' takes batch sizes, precision and clipping from its arguments."""
    return {"zero_optimization": {"stage": stage}, "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "train_batch_size": "auto", "gradient_clipping": "auto",
            "bf16": {"enabled": "auto"}, "zero_allow_untested_optimizer": True}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--max-update", type=int, required=True)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--tokens-per-sample", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--zero-stage", type=int, default=None, help="train inside DeepSpeed at this ZeRO stage")
    parser.add_argument("--local_rank", type=int, default=-1, help="passed by the deepspeed launcher")
    args = parser.parse_args()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))

    config = GPT2Config(vocab_size=args.vocab_size, n_positions=args.tokens_per_sample, n_embd=256, n_layer=4,
                        n_head=4, n_inner=1024, activation_function="gelu", resid_pdrop=0.1, embd_pdrop=0.1,
                        attn_pdrop=0.0, tie_word_embeddings=True, bos_token_id=0, eos_token_id=2)
    model = GPT2LMHeadModel(config)
    dataset = TokenBlocks(read_token_stream(args.data, "train"), args.tokens_per_sample)
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir, use_cpu=True, bf16=args.bf16,
            per_device_train_batch_size=args.batch_size // world_size,
            deepspeed=zero_config(args.zero_stage) if args.zero_stage is not None else None,
            max_steps=args.max_update, learning_rate=5e-4, weight_decay=0.0, lr_scheduler_type="constant",
            max_grad_norm=0.0, logging_strategy="no", save_strategy="no", report_to="none",
            dataloader_num_workers=0, disable_tqdm=True, seed=1)
        trainer = Trainer(model=model, args=training_args, train_dataset=dataset, callbacks=[PrintUpdates()])
        facts = {"parameters": sum(p.numel() for p in model.parameters()), "optimizer": str(training_args.optim),
                 "attention": model.config._attn_implementation, "threads": torch.get_num_threads(),
                 "ranks": world_size, "deepspeed": trainer.is_deepspeed_enabled}
        if training_args.process_index == 0:
            print(json.dumps(facts), flush=True)
        trainer.train()


if __name__ == "__main__":
    main()
