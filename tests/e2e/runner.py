"""Run bigseq's CLIs as a user would (subprocesses, the real launchers) and read their JSON logs.

Commands that join no process group also run in this process (``cli``), as fairseq's
tests/test_binaries.py does: no interpreter start-up and torch/deepspeed imports per call.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
from unittest import mock

from . import warm_start

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
TRAIN_PY = os.path.join(ROOT, "launch", "train.py")

# a tiny model and batch that train in a few seconds on 2 cores
TINY = ["--arch", "llama_tiny", "--tokens-per-sample", "32", "--batch-size", "8", "--lr", "0.003",
        "--log-interval", "1", "--log-format", "json"]


# a tiny translation model and token-bucketed batches
TINY_TRANSLATION = ["--task", "translation", "--arch", "transformer_tiny", "--share-all-embeddings", "--criterion",
                    "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--lr", "0.003", "--max-tokens", "400",
                    "--log-interval", "1", "--log-format", "json"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_corpus(folder: str, n_train: int = 600, n_valid: int = 60, seed: int = 0) -> tuple[str, str]:
    """Sentences from a tiny grammar: learnable structure, so losses fall."""
    rng = random.Random(seed)
    subjects, verbs, objects = ["the cat", "a dog", "my model", "the engine"], ["eats", "trains", "sees"], \
        ["fish", "tokens", "the data", "a checkpoint"]
    os.makedirs(folder, exist_ok=True)
    paths = []
    for split, n in (("train", n_train), ("valid", n_valid)):
        path = os.path.join(folder, f"{split}.txt")
        with open(path, "w") as f:
            for _ in range(n):
                k = rng.randint(1, 4)
                f.write(" and ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}"
                                     for _ in range(k)) + ".\n")
        paths.append(path)
    return paths[0], paths[1]


def write_bitext(folder: str, seed: int = 0) -> str:
    """A word-for-word fr -> en toy corpus ({train,valid,test}.{fr,en}), varied sentence lengths; -> its dir."""
    rng = random.Random(seed)
    words = {"le": "the", "chat": "cat", "chien": "dog", "mange": "eats", "voit": "sees", "poisson": "fish",
             "petit": "small", "grand": "big", "un": "a", "et": "and"}
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", 400), ("valid", 40), ("test", 30)):
        with open(os.path.join(folder, f"{split}.fr"), "w") as fr, open(os.path.join(folder, f"{split}.en"), "w") as en:
            for _ in range(n):
                sentence = [rng.choice(list(words)) for _ in range(rng.randint(2, 12))]
                fr.write(" ".join(sentence) + "\n")
                en.write(" ".join(words[w] for w in sentence) + "\n")
    return folder


def preprocess(raw_dir: str, dest: str, vocab_size: int = 300) -> str:
    train, valid = write_corpus(raw_dir)
    cli("preprocess", "--trainpref", train, "--validpref", valid, "--destdir", dest, "--vocab-size", str(vocab_size),
        check=True)
    return dest


def _no_process_group():
    # a process that joined one ends with os._exit (launch_env.exit_process): here that would end pytest
    raise AssertionError("an in-process `bigseq train` got past its checks to the process group; "
                         "run it with train() (a subprocess)")


def cli(*argv: str, stdin: str = "", check: bool = False) -> subprocess.CompletedProcess:
    """`bigseq ARGV...` in this process, for commands that join no process group (preprocess, convert,
    validate, eval-lm, generate, estimate-memory, a `bigseq train` that stops at its checks); the result
    reads like run()'s. The environment and working directory are restored afterwards."""
    from bigseq.cli.main import main
    from bigseq.training import setup
    stdout, stderr = io.StringIO(), io.StringIO()
    environ = dict(os.environ)
    try:
        with contextlib.chdir(ROOT), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                mock.patch.object(setup, "start_processes", _no_process_group), \
                mock.patch.object(sys, "stdin", io.StringIO(stdin)):
            try:
                code = main(list(argv))
            except SystemExit as e:  # argparse's exits, and every `bigseq train`; Python's codes: None 0, text 1
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
    finally:  # e.g. DS_ACCELERATOR, which every entry point sets
        for added in set(os.environ) - set(environ):
            del os.environ[added]
        os.environ.update(environ)
    proc = subprocess.CompletedProcess(["bigseq", *argv], code, stdout.getvalue(), stderr.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"bigseq {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process started with start_new_session=True and everything it started (a launcher's
    ranks would otherwise live on after a timeout, hung in a collective, eating the suite's CPU)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run(cmd: list[str], *, check: bool = False, timeout: int = 600, env: dict | None = None):
    """cmd in its own session, its output captured; a script of the venv's Python forks from a warm interpreter
    (warm_start: the same process a fresh `python SCRIPT` would be, without ~2.4 s of imports)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if warm_start.can_start(cmd):
        proc = warm_start.run(cmd, cwd=ROOT, env=full_env, timeout=timeout)
    else:
        with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                              start_new_session=True) as popen:
            try:
                stdout, stderr = popen.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_tree(popen)
                raise
        proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
    return _checked(proc, check)


def _checked(proc: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(proc.args)}\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


# Multi-rank runs whose subject is not the launcher fork their ranks from the warm server (warm_start.run_ranks)
# with the variables a launcher sets, the way bigseq reads them from torchrun, DeepSpeed's launcher or srun:
# each rank skips ~2.4 s of imports, a torchrun agent ~1.5 s more. The launchers are tested as such where
# they are the subject: test_parity_zero, test_fault, test_bad_input, test_shm_allreduce (torchrun),
# test_preemption, test_multinode, test_launch_errors, test_finetune_hf, test_shared_memory (deepspeed),
# test_accelerate_launch and test_slurm (srun, sbatch).
MULTI_RANK = "ranks"


def train(data: str, args: list[str], *, nproc: int = 1, launcher: str = "bigseq", log_file: str | None = None,
          check: bool = True, timeout: int = 300, env: dict | None = None, base: list[str] = TINY):
    """Train through `bigseq train` (1 process), `deepspeed`, `torchrun` or forked ranks ("ranks"); returns the
    process. base: the flags before ``args`` (the tiny LM's; TINY_TRANSLATION for a translation model)."""
    flags = [data, *base, *args] + (["--log-file", log_file] if log_file else [])
    if launcher == "ranks" and warm_start.can_start([sys.executable, TRAIN_PY]):
        proc = warm_start.run_ranks(nproc, [TRAIN_PY, *flags], port=free_port(), cwd=ROOT, timeout=timeout,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        return _checked(proc, check)
    if launcher == "ranks":  # BIGSEQ_TEST_COLD_START=1
        launcher = "torchrun"
    if launcher == "bigseq":
        cmd = [os.path.join(BIN, "bigseq"), "train", *flags]
    elif launcher == "deepspeed":
        cmd = [os.path.join(BIN, "deepspeed"), "--num_gpus", str(nproc), "--master_port", str(free_port()),
               TRAIN_PY, *flags]
    elif launcher == "torchrun":
        cmd = [os.path.join(BIN, "torchrun"), "--nproc-per-node", str(nproc), "--master-port", str(free_port()),
               TRAIN_PY, *flags]
    else:
        raise ValueError(launcher)
    return run(cmd, check=check, timeout=timeout, env=env)


def train_in_process(data: str, args: list[str]) -> subprocess.CompletedProcess:
    """`bigseq train` with train()'s flags, in this process: for a run that a user mistake stops before any
    process group starts (a bad flag, config or data dir)."""
    return cli("train", data, *TINY, *args)


def train_losses(log_file: str) -> dict[int, float]:
    """update number -> training loss, from a --log-file written with --log-interval 1."""
    out = {}
    with open(log_file) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("tag") == "train":
                out[int(rec["num_updates"])] = float(rec["loss"])
    return out
