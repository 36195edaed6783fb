"""Start the suite's `bigseq` and `torchrun` commands, and the ranks of multi-rank runs, from a warm interpreter.

A tiny one-process `bigseq train` takes ~3 s on 2 cores, and ~2.4 s of it is start-up: importing
torch (~1 s), DeepSpeed (~0.4 s) and torch._dynamo (~1 s, which every torch optimizer imports when it
is built). The suite starts such processes hundreds of times. Here one server process imports those
once and forks a child per command: the child is a process of its own (own pid and session, the
test's argv, environment and working directory, its own stdout/stderr, exit code and signals) and runs
the command's script as `python SCRIPT` would, so only the interpreter start-up is shared. bigseq
itself is not imported by the server: every command imports the code under test afresh.

What a forked command cannot tell apart from a fresh one, it must not depend on: environment read while
torch or DeepSpeed import (DS_ACCELERATOR is named before, as bigseq's entry points do; the thread pool is
sized again from OMP_NUM_THREADS) and /proc/PID/cmdline (that of the server). BIGSEQ_TEST_COLD_START=1
starts every command as a fresh interpreter, and multi-rank runs through torchrun, instead.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

# the server's start-up, which every forked command then skips
WARM_IMPORTS = ("torch", "torch._dynamo", "numpy", "deepspeed")
BIN = os.path.dirname(sys.executable)
WARM_SCRIPTS = ("bigseq", "torchrun")


def can_start(cmd: list[str]) -> bool:
    """cmd is `bigseq`, `torchrun` or `python SCRIPT.py` of this venv, and forking is safe here (no CUDA: a CUDA
    context does not survive a fork). DeepSpeed's runner stays a fresh process: its ranks read the hostfile
    from its command line (bigseq.distributed.hostfile), and a fork's is the server's."""
    if os.environ.get("BIGSEQ_TEST_COLD_START") == "1":
        return False
    import torch
    if torch.cuda.is_available():
        return False
    if cmd[0] == sys.executable:
        return len(cmd) > 1 and cmd[1].endswith(".py")
    return cmd[0] in (os.path.join(BIN, name) for name in WARM_SCRIPTS)


# ---------------------------------------------------------------------------------------------------------
# client side (the pytest process)

class _Server:
    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="bigseq-warm-")
        self.address = os.path.join(self.folder, "socket")
        self.log = open(os.path.join(self.folder, "server.log"), "w+")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-u", os.path.abspath(__file__), self.address],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while not os.path.exists(self.address):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise RuntimeError(f"the warm-start server did not start:\n{self.log.read()[-3000:]}")
            time.sleep(0.02)
        atexit.register(self.stop)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    def run(self, request: dict, timeout: float) -> subprocess.CompletedProcess:
        cmd = request["cmd"]
        with tempfile.TemporaryFile("w+b") as out, tempfile.TemporaryFile("w+b") as err, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.address)
            request = json.dumps(request).encode() + b"\n"
            socket.send_fds(conn, [request], [out.fileno(), err.fileno()])
            replies = _Lines(conn)
            pid = int(replies.next(None))
            try:
                code = int(replies.next(timeout))
            except TimeoutError:
                _kill_session(pid)
                replies.next(None)  # the kill's status: the session is gone
                out.seek(0), err.seek(0)
                raise subprocess.TimeoutExpired(cmd, timeout, out.read(), err.read()) from None
            out.seek(0), err.seek(0)
            stdout, stderr = (f.read().decode("utf-8", "replace") for f in (out, err))
        return subprocess.CompletedProcess(cmd, code, stdout, stderr)


class _Lines:
    """Lines from a socket, each read with its own time limit (a file from makefile() dies at the first)."""

    def __init__(self, conn: socket.socket):
        self.conn, self.buffer = conn, b""

    def next(self, timeout: float | None) -> str:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            self.conn.settimeout(None if deadline is None else max(deadline - time.monotonic(), 1e-3))
            try:
                chunk = self.conn.recv(4096)
            except socket.timeout:
                raise TimeoutError from None
            if not chunk:
                raise RuntimeError("the warm-start server hung up")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_server: _Server | None = None


def run(cmd: list[str], *, cwd: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """cmd forked from the warm server, as subprocess.run(cmd, cwd, env, capture_output, text) would run it."""
    return _get_server().run({"cmd": cmd, "cwd": cwd, "env": env}, timeout)


def run_ranks(nproc: int, script: list[str], *, port: int, cwd: str, env: dict,
              timeout: float) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` as nproc local ranks of one job, each forked from the warm server with the variables
    a launcher gives it (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT=port; and, as
    torchrun does, OMP_NUM_THREADS=1 unless set). As torchrun and DeepSpeed's launcher do, a failed rank stops
    the others (SIGTERM, then SIGKILL after 10 s); the exit code is the first failed rank's, else 0."""
    return _get_server().run({"cmd": [sys.executable, *script], "cwd": cwd, "env": {**env, "MASTER_PORT": str(port)},
                              "ranks": nproc}, timeout)


def _get_server() -> _Server:
    global _server
    if _server is None or _server.proc.poll() is not None:
        _server = _Server()
    return _server


# ---------------------------------------------------------------------------------------------------------
# server side

def _serve(address: str) -> None:
    parent = os.getppid()
    sys.path[0] = os.path.dirname(sys.executable)  # not this folder: nothing of the tests' is importable
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # as bigseq's entry points name it (can_start: no CUDA)
    for name in WARM_IMPORTS:
        __import__(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address + ".tmp")
    os.rename(address + ".tmp", address)  # the client waits for the name: it appears ready to connect
    listener.listen(16)
    listener.settimeout(1.0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the per-command monitors reap themselves
    while os.getppid() == parent:  # ends with pytest
        try:
            conn, _ = listener.accept()
        except (TimeoutError, socket.timeout):
            continue
        conn.settimeout(None)
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
        if os.fork() == 0:
            listener.close()
            _monitor(conn, json.loads(message), fds)  # never returns
        conn.close()
        for fd in fds:
            os.close(fd)


def _monitor(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """Fork the command, tell the client its pid, wait for it and send its exit code (-N: killed by N)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _session(request, *fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    os._exit(0)


def _session(request: dict, out_fd: int, err_fd: int) -> None:
    """A new session with the command's stdio, directory and environment; then the command, or its ranks."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((devnull, 0), (out_fd, 1), (err_fd, 2)):
        os.dup2(fd, target)  # sys.stdout/err (unbuffered, -u) and every handler holding them now write here
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if "ranks" in request:
        _launch_ranks(request["cmd"], request["ranks"])
    _become(request["cmd"])


def _launch_ranks(cmd: list[str], nproc: int) -> None:
    env = os.environ
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    ranks = {}
    for rank in range(nproc):
        pid = os.fork()
        if pid == 0:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank))
            _become(cmd)
        ranks[pid] = rank
    code, deadline = 0, None
    while ranks:
        pid, status = os.waitpid(-1, os.WNOHANG) if deadline else os.waitpid(-1, 0)
        if pid == 0:
            if time.monotonic() > deadline:
                _signal_all(ranks, signal.SIGKILL)
            time.sleep(0.05)
            continue
        rank, exit_code = ranks.pop(pid), os.waitstatus_to_exitcode(status)
        if exit_code != 0 and code == 0:
            code, deadline = exit_code, time.monotonic() + 10
            print(f"rank {rank} exited with {exit_code}: stopping the other ranks", file=sys.stderr, flush=True)
            _signal_all(ranks, signal.SIGTERM)
    os._exit(code & 0xFF)


def _signal_all(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _become(cmd: list[str]) -> None:
    """Run `cmd`'s script as __main__ and end as Python ends a process: an exception or SystemExit rises
    through this module's frames to the top (exit handlers, flushes, thread joins, the exit code)."""
    sys.argv = list(cmd[1:]) if cmd[0] == sys.executable else list(cmd)
    sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))  # as `python SCRIPT` sets it
    # a fresh interpreter sizes its thread pool from OMP_NUM_THREADS; this one sized it when the server started
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0))))
    import runpy
    runpy.run_path(sys.argv[0], run_name="__main__")
    sys.exit(0)


if __name__ == "__main__":
    _serve(sys.argv[1])
