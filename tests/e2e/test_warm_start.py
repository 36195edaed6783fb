"""The suite's warm start (warm_start.py) must run a script as a fresh `python SCRIPT` would."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from . import warm_start
from .runner import ROOT, free_port, run

pytestmark = pytest.mark.skipif(os.environ.get("BIGSEQ_TEST_COLD_START") == "1",
                                reason="BIGSEQ_TEST_COLD_START=1: nothing starts warm")

SCRIPT = textwrap.dedent("""
    import atexit, json, os, signal, sys, time
    warm = "torch" in sys.modules  # imported before the script ran: forked from the server, not a fresh python
    atexit.register(lambda: print("exit handler ran", flush=True))
    what = sys.argv[1]
    if what == "report":
        print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": os.environ.get("WARM_TEST"),
                          "sid": os.getsid(0) == os.getpid(), "main": __name__, "path0": sys.path[0],
                          "stdin": sys.stdin.read(), "warm": warm,
                          "sigchld": signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL}))
        print("to stderr", file=sys.stderr)
    elif what == "code":
        sys.exit(int(sys.argv[2]))
    elif what == "message":
        sys.exit("a message")
    elif what == "raise":
        raise ValueError("boom")
    elif what == "hang":
        time.sleep(60)
    elif what == "rank":
        names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "OMP_NUM_THREADS")
        print(json.dumps({**{k: os.environ.get(k) for k in names}, "warm": warm}))
        import torch
        print("threads", torch.get_num_threads())
        if os.environ["RANK"] == "1" and len(sys.argv) > 2:
            sys.exit(int(sys.argv[2]))
        if len(sys.argv) > 2:
            time.sleep(60)
    elif what == "osexit":
        print("unflushed?", end="")
        os._exit(3)
""")


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return str(path)


def test_a_python_script_is_started_warm(script):
    assert warm_start.can_start([sys.executable, script])
    assert warm_start.can_start([os.path.join(os.path.dirname(sys.executable), "bigseq"), "train"])
    assert not warm_start.can_start([sys.executable, "-c", "pass"])
    assert warm_start.can_start([os.path.join(os.path.dirname(sys.executable), "torchrun"), "x.py"])
    assert not warm_start.can_start([os.path.join(os.path.dirname(sys.executable), "deepspeed"), "x.py"])
    assert not warm_start.can_start(["bash", "-c", "true"])


def test_argv_environment_cwd_session_and_output(script):
    proc = run([sys.executable, script, "report"], env={"WARM_TEST": "yes"}, check=True)
    report = json.loads(proc.stdout.splitlines()[0])
    assert report == {"argv": [script, "report"], "cwd": ROOT, "env": "yes", "sid": True, "main": "__main__",
                      "path0": os.path.dirname(script), "stdin": "", "warm": True, "sigchld": True}
    assert proc.stdout.splitlines()[1] == "exit handler ran"
    assert proc.stderr == "to stderr\n"


@pytest.mark.parametrize("what, code, stderr", [(["code", "7"], 7, ""), (["message"], 1, "a message\n"),
                                                (["raise"], 1, "ValueError: boom\n"), (["osexit"], 3, "")])
def test_exit_codes_as_python_gives_them(script, what, code, stderr):
    proc = run([sys.executable, script, *what])
    assert proc.returncode == code
    assert proc.stderr.endswith(stderr)
    if what == ["osexit"]:
        assert proc.stdout == "unflushed?"  # -u: nothing waits in a buffer


def test_a_timeout_kills_the_session(script):
    with pytest.raises(subprocess.TimeoutExpired):
        run([sys.executable, script, "hang"], timeout=1)


def test_ranks_get_a_launchers_variables(script):
    proc = warm_start.run_ranks(2, [script, "rank"], port=free_port(), cwd=ROOT, env=dict(os.environ), timeout=60)
    assert proc.returncode == 0, proc.stderr
    reports = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                     key=lambda r: r["RANK"])
    assert [r["RANK"] for r in reports] == ["0", "1"] and [r["LOCAL_RANK"] for r in reports] == ["0", "1"]
    assert len({r["MASTER_PORT"] for r in reports}) == 1 and all(r["warm"] for r in reports)
    assert {(r["WORLD_SIZE"], r["LOCAL_WORLD_SIZE"], r["MASTER_ADDR"], r["OMP_NUM_THREADS"]) for r in reports} == \
        {("2", "2", "127.0.0.1", "1")}
    assert proc.stdout.count("threads 1") == 2  # the pool sized as a fresh process would size it


def test_a_failed_rank_stops_the_others_and_gives_its_code(script):
    proc = warm_start.run_ranks(2, [script, "rank", "5"], port=free_port(), cwd=ROOT, env=dict(os.environ),
                                timeout=30)
    assert proc.returncode == 5 and "rank 1 exited with 5: stopping the other ranks" in proc.stderr
