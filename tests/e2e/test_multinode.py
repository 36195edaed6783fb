"""Two "nodes" on one machine (one launcher process per node) == one node with two ranks.

Each launcher is started the way a user starts it on every node of a cluster: the
`deepspeed` launcher in --no_ssh mode with --node_rank, and torchrun with a c10d
rendezvous. The per-update losses must match a 1 node x 2 processes run. First both
"nodes" share the loopback; then each is its own network namespace with its own address,
joined by a virtual Ethernet link, so ranks can only meet over the network as on two hosts.
"""

import os
import subprocess

import pytest

from .runner import BIN, MULTI_RANK, ROOT, TINY, TRAIN_PY, free_port, kill_tree, train, train_losses

UPDATES = 6
FLAGS = ["--max-update", str(UPDATES), "--no-save", "--disable-validation"]
pytestmark = [pytest.mark.slow, pytest.mark.launcher]


@pytest.fixture(scope="module")
def one_node_two_ranks(tiny_data, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("one_node") / "log.jsonl")
    train(tiny_data, FLAGS, nproc=2, launcher=MULTI_RANK, log_file=log)
    losses = train_losses(log)
    assert sorted(losses) == list(range(1, UPDATES + 1))
    return losses


def _run_nodes(cmds: list[list[str]], timeout: int = 300, node_envs: list[dict] | None = None) -> None:
    """Start every node's launcher at once (they rendezvous with each other) and wait for all."""
    envs = [{**os.environ, "PYTHONUNBUFFERED": "1", **extra} for extra in (node_envs or [{}] * len(cmds))]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for cmd, env in zip(cmds, envs)]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_tree(p)
    for node, (p, out) in enumerate(zip(procs, outputs)):
        # the launcher's own log drowns the rank's traceback: show the lines that explain the failure
        why = "\n".join(line for line in out.splitlines() if "Error" in line or "error:" in line)
        assert p.returncode == 0, f"node {node} failed ({p.returncode}):\n{why[-3000:]}\n{out[-3000:]}"


def _assert_same_losses(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for n in want:
        assert abs(got[n] - want[n]) <= 2e-5, f"update {n}: {got[n]} vs {want[n]}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def two_hosts():
    """Two network namespaces, 10.213.0.1 and 10.213.0.2, linked by a veth pair; yields
    (prefix that runs a command on the host, environment for it) per host. Needs root and
    iproute2: skipped otherwise, except under BIGSEQ_REQUIRE_NETNS=1 (.ci/run sets it)."""
    tag = f"bsq{os.getpid() % 100000}"
    names = [f"{tag}a", f"{tag}b"]  # each namespace's interface carries its name (at most 15 characters)
    try:
        for name in names:
            _ip("netns", "add", name)
        _ip("link", "add", names[0], "type", "veth", "peer", "name", names[1])
        for i, name in enumerate(names):
            _ip("link", "set", name, "netns", name)
            _ip("-n", name, "addr", "add", f"10.213.0.{i + 1}/24", "dev", name)
            _ip("-n", name, "link", "set", name, "up")
            _ip("-n", name, "link", "set", "lo", "up")
        hosts = [(["ip", "netns", "exec", name], f"10.213.0.{i + 1}",
                  # gloo binds where the hostname resolves; on a real cluster, too, the interface is named
                  {"GLOO_SOCKET_IFNAME": name}) for i, name in enumerate(names)]
        reason = None
    except (OSError, subprocess.CalledProcessError) as e:
        reason = f"cannot make network namespaces ({getattr(e, 'stderr', None) or e}); needs root and iproute2"
    if reason is None:
        yield hosts
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    if reason and os.environ.get("BIGSEQ_REQUIRE_NETNS") == "1":
        pytest.fail(f"BIGSEQ_REQUIRE_NETNS=1 but {reason}")
    if reason:
        pytest.skip(reason)


def _deepspeed_nodes(data, hostfile, master: str, port: int, log: str, prefixes) -> list[list[str]]:
    return [[*prefix, os.path.join(BIN, "deepspeed"), "--hostfile", str(hostfile), "--no_ssh", "--node_rank", str(rank),
             "--master_addr", master, "--master_port", str(port), TRAIN_PY, data, *TINY, *FLAGS, "--log-file", log]
            for rank, prefix in enumerate(prefixes)]


def _torchrun_nodes(data, endpoint: str, logs: list[str], prefixes, host_conf=None) -> list[list[str]]:
    return [[*prefix, os.path.join(BIN, "torchrun"), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend",
             "c10d", "--rdzv-endpoint", endpoint, *conf, TRAIN_PY, data, *TINY, *FLAGS, "--log-file", log]
            for log, prefix, conf in zip(logs, prefixes, host_conf or [[], []])]


def _the_rank0_log(logs: list[str]) -> str:
    # c10d decides which node gets rank 0, so each node gets its own log path and exactly one writes
    written = [log for log in logs if os.path.exists(log)]
    assert len(written) == 1, f"expected one rank-0 log, found {written}"
    return written[0]


def test_deepspeed_two_nodes_no_ssh(tiny_data, tmp_path, one_node_two_ranks):
    # the names are only labels in --no_ssh mode; they must be distinct, one line per node
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    log = str(tmp_path / "log.jsonl")
    _run_nodes(_deepspeed_nodes(tiny_data, hostfile, "127.0.0.1", free_port(), log, [[], []]))
    _assert_same_losses(train_losses(log), one_node_two_ranks)


def test_torchrun_two_nodes_c10d(tiny_data, tmp_path, one_node_two_ranks):
    logs = [str(tmp_path / f"node{i}.jsonl") for i in (0, 1)]
    _run_nodes(_torchrun_nodes(tiny_data, f"127.0.0.1:{free_port()}", logs, [[], []]))
    _assert_same_losses(train_losses(_the_rank0_log(logs)), one_node_two_ranks)


def test_deepspeed_two_hosts_no_ssh(tiny_data, tmp_path, one_node_two_ranks, two_hosts):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("".join(f"{address} slots=1\n" for _, address, _ in two_hosts))
    log = str(tmp_path / "log.jsonl")
    master = two_hosts[0][1]
    _run_nodes(_deepspeed_nodes(tiny_data, hostfile, master, 29611, log, [p for p, _, _ in two_hosts]),
               node_envs=[env for _, _, env in two_hosts])
    _assert_same_losses(train_losses(log), one_node_two_ranks)


def test_torchrun_two_hosts_c10d(tiny_data, tmp_path, one_node_two_ranks, two_hosts):
    logs = [str(tmp_path / f"node{i}.jsonl") for i in (0, 1)]
    # both namespaces share one hostname, which resolves to neither: as on nodes with several networks,
    # each node names its own address (--local-addr, what the others dial) and the endpoint's node is
    # told to host the rendezvous store (torchrun would look for the endpoint among its hostname's addresses)
    host_conf = [["--local-addr", address, "--rdzv-conf", f"is_host={int(rank == 0)}"]
                 for rank, (_, address, _) in enumerate(two_hosts)]
    _run_nodes(_torchrun_nodes(tiny_data, f"{two_hosts[0][1]}:29612", logs, [p for p, _, _ in two_hosts], host_conf),
               node_envs=[env for _, _, env in two_hosts])
    _assert_same_losses(train_losses(_the_rank0_log(logs)), one_node_two_ranks)
