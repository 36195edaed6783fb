"""Activation memory with and without --activation-checkpointing (one forward+backward on CPU).

    python benchmarks/activation_checkpointing.py [--arch llama_125m --batch-size 4 --tokens 256]

Each setting runs in a fresh process, so its numbers do not see the others' allocations:
- saved: bytes autograd keeps for the backward (unique storages seen by a saved_tensors_hooks
  around the forward), plus the inputs each recomputed segment keeps;
- peak RSS: the process's peak resident memory during forward+backward minus its resident
  memory before it (weights and preallocated gradients are already there);
- time: forward+backward seconds.
Writes a markdown table to benchmarks/results/activation_checkpointing.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import torch

VOCAB = 32000


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure(arch: str, batch: int, tokens: int, interval: int) -> dict:
    """interval 0: no checkpointing. Runs in the current process (call it in a fresh one)."""
    import bigseq.models  # noqa: F401  (registers the family)
    from bigseq import registry
    from bigseq.models.transformer_lm import architectures as archs
    cfg = dataclasses.replace(getattr(archs, arch)(), checkpoint_activations=interval > 0,
                              checkpoint_interval=max(interval, 1))
    model = registry.MODEL_REGISTRY.build("transformer_lm", cfg, SimpleNamespace(vocab_size=VOCAB, pad_idx=1)).train()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    # a tiny warm-up pass: loads the code paths (checkpointing, autograd) so their one-time memory is not
    # counted; its allocations are far smaller than the measured pass
    model(torch.randint(2, VOCAB, (1, 4))).sum().backward()
    for p in model.parameters():
        p.grad.zero_()
    torch.manual_seed(0)
    tokens_BT = torch.randint(2, VOCAB, (batch, tokens))
    storages: dict[int, int] = {}

    def keep(t: torch.Tensor):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    before_kib = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        logits_BTV = model(tokens_BT)
    loss = torch.nn.functional.cross_entropy(logits_BTV.flatten(0, 1), tokens_BT.flatten())
    loss.backward()
    seconds = time.perf_counter() - start
    peak_kib = _rss_kib("VmHWM")
    segments = -(-cfg.decoder_layers // interval) if interval else 0
    segment_inputs = segments * batch * tokens * cfg.decoder_embed_dim * 4
    return {"interval": interval, "saved_bytes": sum(storages.values()) + segment_inputs,
            "peak_rss_delta_bytes": (peak_kib - before_kib) * 1024, "seconds": seconds, "loss": float(loss.detach())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="llama_125m")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--intervals", default="0,1,4")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(measure(a.arch, a.batch_size, a.tokens, a.child)))
        return
    rows = []
    for interval in map(int, a.intervals.split(",")):
        out = subprocess.run([sys.executable, __file__, "--arch", a.arch, "--batch-size", str(a.batch_size),
                              "--tokens", str(a.tokens), "--child", str(interval)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    base = rows[0]
    mib = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
    lines = [f"# Activation checkpointing: activation memory, {a.arch}, batch {a.batch_size} x {a.tokens} tokens, CPU",
             "", f"torch {torch.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"{torch.get_num_threads()} threads, command `python benchmarks/activation_checkpointing.py "
             f"--arch {a.arch} --batch-size {a.batch_size} --tokens {a.tokens} --intervals {a.intervals}`", "",
             "| setting | saved for backward | vs off | peak RSS over weights+grads | vs off | fwd+bwd time | loss |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = "off" if r["interval"] == 0 else f"--activation-checkpointing --checkpoint-interval {r['interval']}"
        rss_ratio = r['peak_rss_delta_bytes'] / base['peak_rss_delta_bytes']
        lines.append(f"| {name} | {mib(r['saved_bytes'])} | {r['saved_bytes'] / base['saved_bytes']:.0%} | "
                     f"{mib(r['peak_rss_delta_bytes'])} | {rss_ratio:.0%}"
                     f" | {r['seconds']:.1f} s | {r['loss']:.6f} |")
    lines += ["", "Saved for backward: unique storages autograd keeps outside recomputed segments plus each "
              "segment's input (B x T x D fp32). Peak RSS also counts temporaries of the forward and backward "
              "(logits and their gradient, B x T x V, are the same in every setting)."]
    out_path = Path(__file__).parent / "results" / "activation_checkpointing.md"
    tmp = out_path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out_path)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
