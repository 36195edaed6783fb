"""Benchmark bigseq.kernels: attention (TFLOP/s vs SDPA and the matmul roofline), the
losses (time, GB/s vs copy bandwidth, peak memory vs the unfused torch version) and
decode attention (time, GB/s of KV cache read vs SDPA).

    python benchmarks/kernels.py            # GPU: full sizes; CPU: a tiny smoke run
    python benchmarks/kernels.py --tiny     # tiny sizes anywhere

Prints each row as it is measured (a run cut short keeps what it printed), then the
markdown table, and writes it to benchmarks/results/kernels_<device>.md.
On CPU the Triton kernels run in the interpreter: the numbers exercise the script and
are NOT a speed comparison.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any Triton kernel is defined

from bigseq.kernels import attention, cross_entropy, decode_attention, linear_cross_entropy, reference  # noqa: E402
from bigseq.kernels.api import cuda_status, triton_status  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def sync():
    if CUDA:
        torch.cuda.synchronize()


def timed(fn, reps: int) -> float:
    """Median seconds per call after one warm-up call; reps=0: one call, untimed (NaN)."""
    fn()
    sync()
    if reps == 0:
        return float("nan")
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def peak_bytes(fn) -> float:
    """Peak CUDA memory allocated during fn beyond what was live before (NaN on CPU)."""
    if not CUDA:
        return float("nan")
    sync()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    sync()
    return torch.cuda.max_memory_allocated() - base


def mib(nbytes: float) -> str:
    return "n/a" if nbytes != nbytes else f"{nbytes / 2**20:.4g} MiB"


def ratio(a: float, b: float) -> str:
    return "" if a != a or b != b else f" ({a / b:.0%})"


def matmul_tflops(n: int, dtype, reps: int) -> float:
    a, b = torch.randn(n, n, device=DEVICE, dtype=dtype), torch.randn(n, n, device=DEVICE, dtype=dtype)
    return 2 * n**3 / timed(lambda: a @ b, reps) / 1e12


def copy_gbps(numel: int, dtype, reps: int) -> float:
    x = torch.empty(numel, device=DEVICE, dtype=dtype)
    y = torch.empty_like(x)
    return 2 * x.numel() * x.element_size() / timed(lambda: y.copy_(x), reps) / 1e9


def show(row: list[str]) -> list[str]:
    print("| " + " | ".join(row) + " |", flush=True)
    return row


def attention_rows(cfg, roofline: float):
    rows = []
    impls = ["torch"] + (["triton"] if triton_status(torch.device(DEVICE))[0] else [])
    for D in cfg.head_dims:
        heads = cfg.model_dim // D
        for S in cfg.seqlens:
            B = max(1, cfg.tokens // S)
            for causal in (True, False):
                fwd_flops = 4 * B * heads * S * S * D / (2 if causal else 1)
                q, k, v = (torch.randn(B, S, heads, D, device=DEVICE, dtype=cfg.dtype, requires_grad=True)
                           for _ in range(3))
                dout = torch.randn_like(q)
                cells = {}
                for impl in impls:
                    fwd = timed(lambda: attention(q, k, v, causal=causal, impl=impl), cfg.reps)
                    both = timed(lambda: torch.autograd.grad(attention(q, k, v, causal=causal, impl=impl),
                                                             (q, k, v), dout), cfg.reps)
                    cells[impl] = (fwd_flops / fwd / 1e12, 3.5 * fwd_flops / both / 1e12)
                ours = cells.get("triton", (float("nan"),) * 2)
                rows.append(show(["attention", f"D={D} S={S} B={B} H={heads} {'causal' if causal else 'full'}",
                             f"{ours[0]:.3g} / {ours[1]:.3g}", f"{cells['torch'][0]:.3g} / {cells['torch'][1]:.3g}",
                             f"{roofline:.3g}", "TFLOP/s fwd / fwd+bwd (ours, SDPA, matmul roofline)"]))
    return rows


def loss_rows(cfg, copy_rate: float):
    rows = []
    kernels = [i for i, ok in (("triton", triton_status(torch.device(DEVICE))[0]),
                               ("cuda", cuda_status(torch.device(DEVICE))[0])) if ok]
    N, H = cfg.loss_tokens, cfg.hidden
    for V in cfg.vocabs:
        target = torch.randint(0, V, (N,), device=DEVICE)
        logits = torch.randn(N, V, device=DEVICE, dtype=cfg.dtype, requires_grad=True)
        hidden = torch.randn(N, H, device=DEVICE, dtype=cfg.dtype, requires_grad=True)
        weight = (torch.randn(V, H, device=DEVICE, dtype=cfg.dtype) * H**-0.5).requires_grad_()
        moved = 3 * logits.numel() * logits.element_size()  # read (fwd), read + write (bwd)

        def ce(impl):
            return lambda: cross_entropy(logits, target, impl=impl, reduction="mean")[0].backward()

        def lce(impl):
            return lambda: linear_cross_entropy(hidden, weight, target, impl=impl, reduction="mean")[0].backward()

        t_ref, m_ref = timed(ce("torch"), cfg.reps), peak_bytes(ce("torch"))
        lt_ref, lm_ref = timed(lce("torch"), cfg.reps), peak_bytes(lce("torch"))
        for impl in kernels:
            t, m = timed(ce(impl), cfg.reps), peak_bytes(ce(impl))
            rows.append(show(["cross_entropy", f"{impl} N={N} V={V}", f"{t * 1e3:.3g} ms, {moved / t / 1e9:.3g} GB/s",
                         f"{t_ref * 1e3:.3g} ms", f"{copy_rate:.3g} GB/s",
                         f"fwd+bwd; peak mem {mib(m)} vs torch {mib(m_ref)}"]))
            t, m = timed(lce(impl), cfg.reps), peak_bytes(lce(impl))
            rows.append(show(["linear_cross_entropy", f"{impl} N={N} V={V} hidden={H}", f"{t * 1e3:.3g} ms",
                         f"{lt_ref * 1e3:.3g} ms ({t / lt_ref:.2f}x)", "-",
                         f"fwd+bwd; peak mem {mib(m)} vs unfused {mib(lm_ref)}{ratio(m, lm_ref)}"]))
    return rows


@torch.no_grad()
def decode_rows(cfg, copy_rate: float):
    """One query token per sequence against a full KV cache: memory-bound, so GB/s of cache read."""
    rows = []
    ours = cuda_status(torch.device(DEVICE))[0]
    B, Hq, Hkv, D = cfg.decode_shape
    for S in cfg.cache_lens:
        q = torch.randn(B, Hq, D, device=DEVICE, dtype=cfg.dtype)
        k, v = (torch.randn(B, S, Hkv, D, device=DEVICE, dtype=cfg.dtype) for _ in range(2))
        lens = torch.full((B,), S, dtype=torch.int32, device=DEVICE)
        moved = 2 * k.numel() * k.element_size()
        t_ref = timed(lambda: reference.decode_attention(q, k, v, lens, softmax_scale=None), cfg.reps)
        t = timed(lambda: decode_attention(q, k, v, lens, impl="cuda"), cfg.reps) if ours else float("nan")
        cell = "n/a (no CUDA op)" if t != t else f"{t * 1e6:.3g} us, {moved / t / 1e9:.3g} GB/s"
        rows.append(show(["decode_attention", f"cuda B={B} S={S} Hq={Hq} Hkv={Hkv} D={D}", cell,
                          f"{t_ref * 1e6:.3g} us, {moved / t_ref / 1e9:.3g} GB/s (SDPA)", f"{copy_rate:.3g} GB/s",
                          "fwd; K and V cache read once"]))
    return rows


def configs(tiny: bool, dry_run: bool = False):
    if dry_run:  # each code path once, in the interpreter's fp32, nothing timed
        return argparse.Namespace(dtype=torch.bfloat16 if CUDA else torch.float32, tokens=64, model_dim=32,
                                  head_dims=(32,), seqlens=(32,), loss_tokens=16, vocabs=(300,), hidden=32, reps=0,
                                  matmul_n=64, copy_numel=1 << 10, decode_shape=(1, 2, 1, 32), cache_lens=(32,))
    if tiny:  # the Triton interpreter gets bf16 tl.dot wrong: fp32 there
        return argparse.Namespace(dtype=torch.bfloat16 if CUDA else torch.float32, tokens=128, model_dim=64,
                                  head_dims=(32, 64), seqlens=(64,), loss_tokens=32, vocabs=(300,),
                                  hidden=64, reps=1,
                                  matmul_n=256, copy_numel=1 << 20, decode_shape=(2, 4, 2, 64), cache_lens=(64,))
    return argparse.Namespace(dtype=torch.bfloat16, tokens=16384, model_dim=2048, head_dims=(64, 128),
                              seqlens=(512, 1024, 2048, 4096, 8192, 16384), loss_tokens=16384,
                              vocabs=(32768, 131072), hidden=4096, reps=10, matmul_n=8192, copy_numel=1 << 28,
                              decode_shape=(8, 32, 8, 128), cache_lens=(1024, 4096, 16384, 65536))


def header() -> list[str]:
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent).stdout
        except OSError:
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    if git("status", "--porcelain", "--untracked-files=no").strip():
        commit += " + uncommitted changes"
    device = torch.cuda.get_device_name() if CUDA else "CPU (Triton interpreter)"
    lines = [f"# bigseq kernels benchmark: {device}", "",
             f"commit {commit}, torch {torch.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"command `python {' '.join(sys.argv)}`", ""]
    if not CUDA:
        lines += ["**CPU run: the Triton kernels execute in the interpreter and torch runs natively, so these "
                  "numbers only show that the script works. They are NOT a speed comparison.**", ""]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the default on CPU)")
    parser.add_argument("--dry-run", action="store_true", help="each kernel once at toy sizes, nothing timed")
    parser.add_argument("--out", type=Path, default=None, help="result file (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    cfg = configs(args.tiny or not CUDA, args.dry_run)
    roofline = matmul_tflops(cfg.matmul_n, cfg.dtype, cfg.reps)
    copy_rate = copy_gbps(cfg.copy_numel, cfg.dtype, cfg.reps)
    print(f"matmul roofline {roofline:.3g} TFLOP/s, copy {copy_rate:.3g} GB/s ({cfg.dtype})", flush=True)
    rows = attention_rows(cfg, roofline) + loss_rows(cfg, copy_rate) + decode_rows(cfg, copy_rate)
    table = ["| kernel | case | ours | torch | roofline | note |", "|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(header() + table) + "\n"
    print(text)
    slug = "cpu" if not CUDA else torch.cuda.get_device_name().lower().replace(" ", "_")
    out = args.out or RESULTS / f"kernels_{slug}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
