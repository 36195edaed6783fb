"""Run a command as if on a CPU about 2.5x slower per core (an emulation of the AMD EPYC kind).

The same 2-core machine also comes as an AMD EPYC with AVX2 only, ~2.5x slower on everything than
the Intel Xeon. Where none is at hand, this slows every core of this one: a busy loop pinned to each
core competes with the command, which runs at nice +2. Linux's scheduler gives a nice-2 thread
655/(655+1024) = 39% of a core that a nice-0 thread also wants, so each of the command's threads
advances at ~0.39x (2.55x slower), however many of them there are. --avx2 also limits torch, oneDNN
and MKL to AVX2 kernels (bf16 matmuls then run emulated, as on that CPU).

The slowdown is measured, not assumed: a 1024^3 fp32 matmul on 1 and on 2 threads before and
with the busy loops (multi-threaded work loses more than 2.5x: a time-sliced thread holds up the
other at each barrier; the emulation errs on the slow side there).

    python benchmarks/slow_cpu.py --avx2 -- .venv/bin/python -m pytest -q
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
COMMAND_NICE = 2  # vs the busy loops' 0: weight 655 against 1024
_MATMUL = ("import sys, time, torch; torch.set_num_threads(int(sys.argv[1])); a = torch.randn(1024, 1024); "
           "[a @ a for _ in range(3)]; t = time.perf_counter(); n = 0\n"
           "while time.perf_counter() - t < 2: a @ a; n += 1\n"
           "print(n * 2 * 1024**3 / (time.perf_counter() - t) / 1e9)")


def start_busy_loops() -> list[subprocess.Popen]:
    """One nice-0 busy loop pinned to each core this process may run on."""
    loops = []
    for cpu in sorted(os.sched_getaffinity(0)):
        loops.append(subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\n"
                                                             "while True: pass"]))
    return loops


def stop(loops: list[subprocess.Popen]) -> None:
    for p in loops:
        p.kill()
        p.wait()


def matmul_gflops(threads: int, env: dict, nice: int) -> float:
    out = subprocess.run(["nice", "-n", str(nice), sys.executable, "-c", _MATMUL, str(threads)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def calibrate(env: dict) -> list[tuple[int, float, float]]:
    """(threads, GFLOP/s alone, GFLOP/s beside the busy loops) for 1 and 2 threads."""
    alone = [(t, matmul_gflops(t, env, 0)) for t in (1, 2)]
    loops = start_busy_loops()
    try:
        slowed = [matmul_gflops(t, env, COMMAND_NICE) for t in (1, 2)]
    finally:
        stop(loops)
    return [(t, a, s) for (t, a), s in zip(alone, slowed)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--avx2", action="store_true", help="limit torch, oneDNN and MKL to AVX2 kernels as well")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run slowed down")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    env = {**os.environ, **(AVX2_ONLY if args.avx2 else {})}
    for threads, alone, slowed in calibrate(env):
        print(f"slow_cpu: 1024^3 fp32 matmul on {threads} thread(s): {alone:.0f} GFLOP/s alone, {slowed:.0f} beside "
              f"the busy loops ({alone / slowed:.1f}x slower)", flush=True)
    if not command:
        return 0
    loops = start_busy_loops()
    start = time.monotonic()
    try:
        rc = subprocess.call(["nice", "-n", str(COMMAND_NICE), *command], env=env)
    finally:
        stop(loops)
    print(f"slow_cpu: exit {rc} after {time.monotonic() - start:.0f} s ({' '.join(command)})", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
