"""`python -m bigseq.distributed.prebuild_ops`: compile DeepSpeed's CPU ops once, at set-up.

DeepSpeed JIT-compiles its CPU ops (CPU Adam for optimizer offload, the shared-memory
all-reduce of the CPU accelerator) the first time a run needs them: about a minute of g++
inside the first training run, on every rank at once, and inside that run's memory limit.
`make setup` builds them here instead, into torch's extension cache (~/.cache/torch_extensions
or $TORCH_EXTENSIONS_DIR), as `DS_BUILD_CPU_ADAM=1 pip install deepspeed` would at install time.
Where they cannot be built (no C++ compiler), set-up goes on with one line saying so: only runs
that need an op (optimizer offload, several CPU ranks) need the compiler, as before.
"""

from __future__ import annotations

import time


def main() -> int:
    from bigseq.distributed import name_accelerator
    name_accelerator()
    from deepspeed.accelerator import get_accelerator

    from bigseq.distributed.build_locks import check_build_locks, pin_ninja
    check_build_locks()  # a lock left by a killed build would hang the compile below
    pin_ninja()  # the ninja every later run builds with, or they rebuild
    ops = ["CPUAdamBuilder"] + (["ShareMemCommBuilder"] if get_accelerator().device_name() == "cpu" else [])
    start = time.monotonic()
    for op in ops:
        try:
            get_accelerator().create_op_builder(op).load(verbose=False)
        except Exception as e:  # a compiler error, no g++: the runs that need the op will say so themselves
            print(f"bigseq: WARNING: DeepSpeed's {op} could not be built now ({type(e).__name__}: "
                  f"{str(e).strip().splitlines()[-1] if str(e).strip() else 'no message'}); runs that need it "
                  f"build it when they start (it needs a C++ compiler and ninja)", flush=True)
            return 0
    print(f"bigseq: DeepSpeed ops {', '.join(ops)} built in {time.monotonic() - start:.0f}s "
          f"(cached for every later run)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
