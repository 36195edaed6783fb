"""Training throughput of one tool on one GPU: `bigseq train` or HF Trainer, the same Llama and data.

    python benchmarks/gpu/train_speed.py --tool bigseq|hf --work DIR [--dry-run]

Data: random token ids in a bigseq data dir (written once into DIR/data; both tools read the same
stream, HF Trainer as consecutive blocks of it). Model: llama_1b (22 x 2048, GQA 32/4 heads, vocab
32k), bf16, AdamW, 4 x 2048 tokens per update; HF runs the LlamaForCausalLM that bigseq's own
exporter makes of that config. Prints one JSON line: tokens/s and model TFLOP/s (median over the
updates after the warm-up), the bf16 matmul peak measured here, and MFU = model TFLOP/s / that peak.
--dry-run: llama_tiny on CPU in fp32, a few updates; the figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
VOCAB, PAD, EOS = 32000, 1, 2


def sizes(dry_run: bool) -> argparse.Namespace:
    from bigseq.models.transformer_lm.architectures import llama_1b, llama_tiny
    if dry_run:
        return argparse.Namespace(arch="llama_tiny", cfg=llama_tiny(), vocab=512, seq=64, batch=4, updates=6,
                                  warmup=2, precision="fp32", tokens=50_000)
    return argparse.Namespace(arch="llama_1b", cfg=llama_1b(), vocab=VOCAB, seq=2048, batch=4, updates=40,
                              warmup=10, precision="bf16", tokens=4_000_000)


def write_data(data: Path, s) -> None:
    """Random documents of 1-4k tokens; metadata.json last, so a present one means a complete dir."""
    from bigseq.data.indexed_dataset import MMapIndexedDatasetBuilder, best_dtype
    from bigseq.data.metadata import read_metadata, write_metadata
    if (data / "metadata.json").exists() and read_metadata(str(data)).get("vocab_size") == s.vocab:
        return
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    dtype = best_dtype(s.vocab)
    splits = {}
    for split, n in (("train", s.tokens), ("valid", s.tokens // 50)):
        sizes_ = rng.integers(1000, 4000, n // 1000 + 1)
        sizes_ = sizes_[np.cumsum(sizes_) <= n]
        with MMapIndexedDatasetBuilder(str(data / split), dtype) as builder:
            builder.add_items(rng.integers(4, s.vocab, int(sizes_.sum())), sizes_)
        splits[split] = {"documents": len(sizes_), "tokens": int(sizes_.sum())}
    write_metadata(str(data), {"format": "bigseq-mmap", "version": 1, "vocab_size": s.vocab, "bos_idx": 0,
                               "pad_idx": PAD, "eos_idx": EOS, "unk_idx": 3, "dtype": str(dtype), "splits": splits})


def matmul_peak_tflops() -> float:
    """Measured bf16 8192^3 matmul rate: the ceiling MFU is stated against (not the datasheet's)."""
    if not torch.cuda.is_available():
        return float("nan")
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12


def flops_per_token(s, num_params: int) -> float:
    from bigseq.models.family import get_family
    return get_family("transformer_lm").flops_per_token(s.cfg, num_params, s.seq)


def run_bigseq(s, data: Path, work: Path) -> dict:
    log = work / "bigseq-train.jsonl"
    log.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bigseq.cli.main", "train", str(data), "--arch", s.arch, "--tokens-per-sample",
           str(s.seq), "--batch-size", str(s.batch), "--optimizer", "adamw", "--lr", "1e-4", "--clip-norm", "1.0",
           "--max-update", str(s.updates), "--precision", s.precision, "--log-format", "json", "--log-interval", "1",
           "--log-file", str(log), "--no-save", "--save-dir", str(work / "bigseq-ckpt"), "--disable-validation"]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    recs = [r for r in map(json.loads, log.read_text().splitlines())
            if r.get("tag") == "train" and r.get("num_updates", 0) > s.warmup]
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in recs),
            "model_tflops": statistics.median(r["tflops"] for r in recs), "command": " ".join(cmd[2:])}


def run_hf(s, data: Path, work: Path) -> dict:
    from transformers import LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from bigseq.data.metadata import read_metadata
    from bigseq.models.transformer_lm.hf import hf_config_from_cfg
    s.cfg.vocab_size = s.vocab
    hf_cfg = hf_config_from_cfg(s.cfg, "llama", bos_token_id=0, eos_token_id=EOS, pad_token_id=PAD)
    model = LlamaForCausalLM(hf_cfg)
    stream = np.memmap(data / "train.bin", dtype=read_metadata(str(data))["dtype"], mode="r")
    blocks = [{"input_ids": torch.from_numpy(stream[i:i + s.seq].astype(np.int64)),
               "labels": torch.from_numpy(stream[i:i + s.seq].astype(np.int64))}
              for i in range(0, s.seq * s.batch * (s.updates + 1), s.seq)]
    stamps = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    cuda = torch.cuda.is_available()
    args = TrainingArguments(output_dir=str(work / "hf-out"), use_cpu=not cuda, bf16=s.precision == "bf16",
                             per_device_train_batch_size=s.batch, max_steps=s.updates, learning_rate=1e-4,
                             lr_scheduler_type="constant", max_grad_norm=1.0, weight_decay=0.0,
                             optim="adamw_torch_fused" if cuda else "adamw_torch", logging_strategy="no",
                             save_strategy="no", report_to="none", dataloader_num_workers=0, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=blocks, callbacks=[Stamp()]).train()
    steps = np.diff(stamps[s.warmup - 1:])
    tokens_per_s = s.batch * s.seq / float(np.median(steps))
    params = sum(p.numel() for p in model.parameters())
    return {"tokens_per_s": tokens_per_s, "model_tflops": tokens_per_s * flops_per_token(s, params) / 1e12,
            "attention": model.config._attn_implementation, "optimizer": str(args.optim)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", choices=("bigseq", "hf"), required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    s = sizes(args.dry_run)
    data = args.work / "data"
    write_data(data, s)
    result = (run_bigseq if args.tool == "bigseq" else run_hf)(s, data, args.work)
    peak = matmul_peak_tflops()
    result.update(tool=args.tool, arch=s.arch, precision=s.precision, tokens_per_update=s.batch * s.seq,
                  updates=s.updates, warmup=s.warmup, peak_tflops=peak, mfu=result["model_tflops"] / peak,
                  device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
