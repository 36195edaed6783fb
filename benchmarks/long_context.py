"""--document-mask cost vs plain packing, and activation memory with/without --mlp-chunks (CPU or CUDA).

    python benchmarks/long_context.py [--arch llama_125m --tokens 4096 --chunks 1,4,16 --doc-tokens 256]

- docmask: fwd+bwd tokens/s of the same packed rows (break mode 'complete' layout: documents of
  about --doc-tokens tokens, eos first) without and with the document layout (positions and
  cu_seqlens from the collate; --attention-impl auto: Triton varlen on CUDA, the per-document
  loop on CPU), and the mean loss of each, which differ because packed documents stop seeing
  each other.
- mlp-chunks: one fwd+bwd at --tokens per setting, each in a fresh process (its peak sees none
  of the others' allocations): bytes autograd keeps for the backward (unique storages seen by a
  saved_tensors_hooks), peak memory over the weights (CUDA: max_memory_allocated; CPU: peak RSS
  over the RSS before the step), time. With --fused-linear-ce's loss, so the (T, V) logits are
  tiled too.
Prints markdown tables; with --out also writes them there (with date, commit, machine and command).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

PAD, EOS = 1, 2


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def _model(arch: str, tokens: int, vocab: int, device: str, **overrides):
    import bigseq.models  # noqa: F401  (registers the family)
    from bigseq import registry
    from bigseq.models.transformer_lm import architectures as archs
    cfg = dataclasses.replace(getattr(archs, arch)(), dropout=0.0, attention_impl="auto",
                              max_target_positions=max(tokens, getattr(archs, arch)().max_target_positions),
                              **overrides)
    task = SimpleNamespace(vocab_size=vocab, pad_idx=PAD)
    return registry.MODEL_REGISTRY.build("transformer_lm", cfg, task).to(device).train()


def _criterion(fused: bool):
    from bigseq.criterions.cross_entropy import CrossEntropyConfig
    from bigseq.registry import CRITERION_REGISTRY
    return CRITERION_REGISTRY.build("cross_entropy", CrossEntropyConfig(fused_linear_ce=fused),
                                    SimpleNamespace(pad_idx=PAD))


def packed_batch(rows: int, tokens: int, doc_tokens: int, vocab: int, document_mask: bool, device: str):
    """Rows of whole documents (eos first, lengths around doc_tokens), as the 'complete' mode packs them."""
    from bigseq.data.lm_dataset import LMDataset
    from bigseq.data.token_blocks import TokenBlocks
    rng = np.random.default_rng(0)
    sizes = np.clip(rng.exponential(doc_tokens, size=rows * tokens // max(doc_tokens // 2, 1)), 2, tokens).astype(int)
    stream = rng.integers(3, vocab, size=int(sizes.sum()))
    stream[np.cumsum(sizes) - 1] = EOS  # every document ends with eos
    blocks = TokenBlocks.build(stream, sizes, tokens_per_sample=tokens, break_mode="complete", eos=EOS)
    ds = LMDataset(blocks, PAD, document_mask=document_mask)
    b = ds.collate([ds[i] for i in range(rows)], np.arange(rows), width=tokens, global_ntokens=0)
    b.ntokens = b.global_ntokens = int((b.targets != PAD).sum())
    for name in ("tokens", "targets", "positions", "cu_seqlens"):
        if getattr(b, name) is not None:
            setattr(b, name, getattr(b, name).to(device))
    return b


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_docmask(a, device: str) -> list[str]:
    model, criterion = _model(a.arch, a.tokens, a.vocab, device), _criterion(fused=True)
    rows = ["| layout | documents | tokens/s (fwd+bwd) | loss (nats/token) |", "|---|---|---|---|"]
    for masked in (False, True):
        b = packed_batch(a.rows, a.tokens, a.doc_tokens, a.vocab, masked, device)
        seconds = []
        for _ in range(a.repeats + 1):  # the first is a warm-up
            _sync(device)
            start = time.perf_counter()
            loss, _, _ = criterion(model, b)
            loss.backward()
            _sync(device)
            seconds.append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
        docs = len(b.cu_seqlens) - 1 if masked else int((b.tokens == EOS).sum())
        rows.append(f"| {'--document-mask' if masked else 'plain packing'} | {docs} | "
                    f"{b.ntokens / np.median(seconds[1:]):,.0f} | {float(loss.detach()) / b.ntokens:.4f} |")
    return rows


def measure_chunks(a, chunks: int, device: str) -> dict:
    """One fwd+bwd at --tokens with --mlp-chunks `chunks`; call it in a fresh process."""
    model, criterion = _model(a.arch, a.tokens, a.vocab, device, mlp_chunks=chunks), _criterion(fused=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    warm = packed_batch(1, 8, 4, a.vocab, False, device)
    criterion(model, warm)[0].backward()  # loads the code paths; far smaller than the measured step
    b = packed_batch(a.rows, a.tokens, a.tokens, a.vocab, False, device)
    storages: dict[int, int] = {}

    def keep(t: torch.Tensor):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        loss, _, _ = criterion(model, b)
    loss.backward()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else _rss_kib("VmHWM") * 1024
    return {"chunks": chunks, "saved": sum(storages.values()), "peak": peak - before, "seconds": seconds,
            "loss": float(loss.detach()) / b.ntokens}


def bench_chunks(a) -> list[str]:
    rows = ["| --mlp-chunks | saved for backward | peak over weights | fwd+bwd | loss |", "|---|---|---|---|---|"]
    mib = lambda n: f"{n / 2**20:,.1f} MiB"  # noqa: E731
    for k in map(int, a.chunks.split(",")):
        argv = [sys.executable, __file__, "--child", str(k)] + [f"--{n.replace('_', '-')}={v}" for n, v in
                                                                vars(a).items() if n not in ("child", "only", "out")]
        r = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        rows.append(f"| {k} | {mib(r['saved'])} | {mib(r['peak'])} | {r['seconds']:.2f} s | {r['loss']:.6f} |")
    return rows


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="llama_125m")
    ap.add_argument("--tokens", type=int, default=4096, help="tokens per row (T)")
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--doc-tokens", type=int, default=256, help="mean document length of the packed rows")
    ap.add_argument("--chunks", default="1,4,16", help="--mlp-chunks settings to compare")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=("docmask", "chunks"), default=None)
    ap.add_argument("--out", default=None, help="also write the tables here, e.g. benchmarks/results/long_context.md")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.child is not None:
        print(json.dumps(measure_chunks(a, a.child, device)))
        return ""
    head = (f"{a.arch}, {a.rows} x {a.tokens} tokens, {device}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
    lines = []
    if a.only != "chunks":
        lines += [f"## --document-mask vs plain packing ({head}, documents of ~{a.doc_tokens} tokens)", "",
                  *bench_docmask(a, device), ""]
    if a.only != "docmask":
        lines += [f"## --mlp-chunks ({head}, --fused-linear-ce)", "", *bench_chunks(a)]
    print("\n".join(lines))
    if a.out:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import report
        flags = " ".join(f"--{n.replace('_', '-')} {v}" for n, v in vars(a).items()
                         if v is not None and n not in ("child", "out"))
        report.write(a.out, "Long context on one process: --document-mask and --mlp-chunks", head + ".",
                     f"python benchmarks/long_context.py {flags} --out {a.out}", lines,
                     "--document-mask runs attention per document (CPU) or as Triton varlen (CUDA) over the same "
                     "tokens; its loss differs from plain packing's because packed documents no longer see each "
                     "other. --mlp-chunks recomputes the feed-forward block slice by slice in the backward: the "
                     "saved activations and the peak fall, the loss stays the same, the time grows by one more "
                     "forward of the block.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
