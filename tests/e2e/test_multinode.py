"""Two "nodes" on one machine (one launcher process per node) == one node with two ranks.

Each launcher is started the way a user starts it on every node of a cluster: the
`deepspeed` launcher in --no_ssh mode with --node_rank, and torchrun with a c10d
rendezvous. The per-update losses must match a 1 node x 2 processes run.
"""

import os
import subprocess

import pytest

from .runner import BIN, ROOT, TINY, TRAIN_PY, free_port, train, train_losses

UPDATES = 6
FLAGS = ["--max-update", str(UPDATES), "--no-save", "--disable-validation"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_node_two_ranks(tiny_data, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("one_node") / "log.jsonl")
    train(tiny_data, FLAGS, nproc=2, launcher="deepspeed", log_file=log)
    losses = train_losses(log)
    assert sorted(losses) == list(range(1, UPDATES + 1))
    return losses


def _run_nodes(cmds: list[list[str]], timeout: int = 300) -> None:
    """Start every node's launcher at once (they rendezvous with each other) and wait for all."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd in cmds]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for node, (p, out) in enumerate(zip(procs, outputs)):
        # the launcher's own log drowns the rank's traceback: show the lines that explain the failure
        why = "\n".join(line for line in out.splitlines() if "Error" in line or "error:" in line)
        assert p.returncode == 0, f"node {node} failed ({p.returncode}):\n{why[-3000:]}\n{out[-3000:]}"


def _assert_same_losses(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for n in want:
        assert abs(got[n] - want[n]) <= 2e-5, f"update {n}: {got[n]} vs {want[n]}"


def test_deepspeed_two_nodes_no_ssh(tiny_data, tmp_path, one_node_two_ranks):
    # the names are only labels in --no_ssh mode; they must be distinct, one line per node
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    port, log = free_port(), str(tmp_path / "log.jsonl")
    _run_nodes([[os.path.join(BIN, "deepspeed"), "--hostfile", str(hostfile), "--no_ssh", "--node_rank", str(rank),
                 "--master_addr", "127.0.0.1", "--master_port", str(port), TRAIN_PY, tiny_data, *TINY, *FLAGS,
                 "--log-file", log] for rank in (0, 1)])
    _assert_same_losses(train_losses(log), one_node_two_ranks)


def test_torchrun_two_nodes_c10d(tiny_data, tmp_path, one_node_two_ranks):
    # c10d decides which node gets rank 0, so each node gets its own log path and exactly one writes
    port = free_port()
    logs = [str(tmp_path / f"node{i}.jsonl") for i in (0, 1)]
    _run_nodes([[os.path.join(BIN, "torchrun"), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                 "--rdzv-endpoint", f"127.0.0.1:{port}", TRAIN_PY, tiny_data, *TINY, *FLAGS, "--log-file", log]
                for log in logs])
    written = [log for log in logs if os.path.exists(log)]
    assert len(written) == 1, f"expected one rank-0 log, found {written}"
    _assert_same_losses(train_losses(written[0]), one_node_two_ranks)
