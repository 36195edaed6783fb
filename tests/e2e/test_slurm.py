"""launch/slurm/*.sbatch on a real one-node SLURM cluster (slurmctld + slurmd + munge on localhost).

Skipped where SLURM is not installed, unless BIGSEQ_REQUIRE_SLURM=1 (CI), where that fails.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time

import psutil
import pytest

from .runner import BIN, ROOT, TINY, free_port, train_losses

SLURM_PROGRAMS = ("slurmctld", "slurmd", "munged", "sbatch", "scontrol", "squeue", "sacct")
FLAGS = [*TINY, "--dropout", "0.1", "--max-update", "20", "--disable-validation"]
pytestmark = pytest.mark.slurm


def _missing_slurm_reason() -> str | None:
    missing = [p for p in SLURM_PROGRAMS if shutil.which(p, path=os.environ["PATH"] + ":/usr/sbin:/sbin") is None]
    if missing:
        return f"SLURM not installed (missing {', '.join(missing)}); apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (slurmd)"
    return None


def _slurm_conf(state: str, host: str) -> str:
    return f"""ClusterName=bigseqtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SchedulerType=sched/builtin
MpiDefault=none
JobRequeue=1
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
KillWait=30
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=local Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _munge_works() -> bool:
    encode = subprocess.run(["munge", "-n"], capture_output=True)
    return encode.returncode == 0 and subprocess.run(["unmunge"], input=encode.stdout,
                                                     capture_output=True).returncode == 0


class Cluster:
    def __init__(self, state: str):
        self.state, self.host = state, socket.gethostname().split(".")[0]
        self.env = {**os.environ, "SLURM_CONF": os.path.join(state, "slurm.conf"),
                    "PATH": f"{BIN}:{os.environ['PATH']}:/usr/sbin:/sbin"}
        self.daemons: list[subprocess.Popen] = []

    def start(self) -> None:
        for sub in ("ctld", "d"):
            os.makedirs(os.path.join(self.state, sub), exist_ok=True)
        with open(self.env["SLURM_CONF"], "w") as f:
            f.write(_slurm_conf(self.state, self.host))
        if not _munge_works():
            os.makedirs("/run/munge", exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            self._daemon(["munged", "--foreground", "--force"])
            self._until(_munge_works, "munged did not start")
        self._daemon(["slurmctld", "-D", "-i"])
        self._daemon(["slurmd", "-D", "-N", self.host])
        self._until(lambda: "idle" in self.cmd(["sinfo", "-h", "-o", "%T"]).stdout, "the node never became idle")

    def _daemon(self, cmd: list[str]) -> None:
        log = open(os.path.join(self.state, cmd[0] + ".out"), "w")
        self.daemons.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def _until(self, ready, message: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for d in self.daemons:
                assert d.poll() is None, f"{d.args[0]} exited {d.returncode}: {self.logs()}"
            assert time.monotonic() < deadline, f"{message}: {self.logs()}"
            time.sleep(0.5)

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out", "munged.out"):
            path = os.path.join(self.state, name)
            if os.path.exists(path):
                out.append(f"--- {name}\n" + open(path).read()[-2000:])
        return "\n".join(out)

    def stop(self) -> None:
        # a job a failed test left running (or frozen) goes first, so that no training outlives the cluster
        if self.daemons and self.cmd(["scancel", "--full", "--signal=KILL", "--user=root"]).returncode == 0:
            self._until(lambda: not self.cmd(["squeue", "-h"]).stdout.strip(), "jobs left after scancel", 30)
        for d in reversed(self.daemons):
            d.terminate()
        for d in reversed(self.daemons):
            try:
                d.wait(timeout=30)
            except subprocess.TimeoutExpired:
                d.kill()

    def cmd(self, args: list[str], check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert not check or proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"
        return proc

    def sbatch(self, script: str, sbatch_args: list[str], train_args: list[str], workdir: str,
               env: dict | None = None) -> str:
        args = ["sbatch", "--parsable", f"--chdir={workdir}", *sbatch_args, os.path.join(ROOT, script), *train_args]
        proc = subprocess.run(args, env={**self.env, **(env or {})}, capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().split(";")[0]

    def job_state(self, job: str) -> tuple[str, int, int]:
        """(state, exit code, restart count) from scontrol (no accounting database here)."""
        fields = dict(kv.split("=", 1) for kv in self.cmd(["scontrol", "-o", "show", "job", job], check=True)
                      .stdout.split() if "=" in kv)
        return fields["JobState"], int(fields["ExitCode"].split(":")[0]), int(fields["Restarts"])

    def start_when_requeued(self, job: str, timeout: float = 120) -> None:
        """SLURM holds a requeued job back for about two minutes (BeginTime); tests need not wait that long.

        Not at once either: slurmd refuses a credential issued in the same second as the old run's was
        revoked ("Job credential revoked"), so the restart waits for the next second."""
        deadline = time.monotonic() + timeout
        while (state := self.job_state(job))[2] == 0 or state[0] != "PENDING":
            assert state[0] in ("RUNNING", "COMPLETING", "PENDING", "REQUEUED"), f"job {job} {state}"
            assert time.monotonic() < deadline, f"job {job} not requeued: {state}"
            time.sleep(0.2)
        time.sleep(2)
        self.cmd(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)

    def wait_done(self, job: str, timeout: float = 300) -> tuple[str, int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.job_state(job)
            if state[0] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return state
            time.sleep(1)
        raise AssertionError(f"job {job} still {self.job_state(job)} after {timeout}s")


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    reason = _missing_slurm_reason()
    if reason:
        if os.environ.get("BIGSEQ_REQUIRE_SLURM") == "1":
            pytest.fail(f"BIGSEQ_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    cluster = Cluster(str(tmp_path_factory.mktemp("slurm")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _job_output(workdir: str, job: str) -> str:
    with open(os.path.join(workdir, f"bigseq-{job}.out")) as f:
        return f.read()


def _a_rank_pid(save_dir: str) -> int | None:
    """A training rank of the job: `bigseq train` under srun, `python -m bigseq.cli.train` under deepspeed."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if save_dir in cmd and (cmd[2:4] == ["-m", "bigseq.cli.train"] or cmd[1:3] == [os.path.join(BIN, "bigseq"),
                                                                                         "train"]):
            return proc.pid
    return None


def _rank_at_update(slurm, job: str, save_dir: str, log: str, updates: int) -> int:
    """A rank of the job, as soon as `updates` updates are logged.

    The 20 tiny updates take well under a second: the rank is found while the run starts and the
    log is polled every few ms, so the signal lands long before the run ends, on a slow CPU too."""
    deadline, pid = time.monotonic() + 240, None
    while not (pid and os.path.exists(log) and len(train_losses(log)) >= updates):
        assert time.monotonic() < deadline, f"no update {updates}: {slurm.job_state(job)}"
        pid = pid or _a_rank_pid(save_dir)
        time.sleep(0.005 if pid else 0.1)
    assert len(train_losses(log)) < int(FLAGS[FLAGS.index("--max-update") + 1]), "the run ended before the signal"
    return pid


def _frozen_until_signalled(pid: int, send, sig: int = signal.SIGUSR1) -> None:
    """A tiny update takes milliseconds: hold one rank (so all) until `send()`'s `sig` reached it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        send()
        deadline = time.monotonic() + 60
        while os.path.exists(f"/proc/{pid}") and not _pending(pid, sig):  # scancel sends SIGCONT first itself
            assert time.monotonic() < deadline, f"{signal.Signals(sig).name} never reached the training process"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):  # already through and gone
            os.kill(pid, signal.SIGCONT)


def _pending(pid: int, sig: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            masks = [int(line.split()[1], 16) for line in f if line.startswith(("SigPnd:", "ShdPnd:"))]
    except FileNotFoundError:
        return False
    return any(m & (1 << (sig - 1)) for m in masks)


def _run_job(slurm, tmp_path, tiny_data, script, sbatch_args, env=None, interrupt_after=None, batch_only=False):
    """Submit `script`; with interrupt_after=k, send USR1 once update k is logged. -> (restarts, losses, out)"""
    save_dir, log = str(tmp_path / "ck"), str(tmp_path / "train.jsonl")
    job = slurm.sbatch(script, sbatch_args, [tiny_data, *FLAGS, "--save-dir", save_dir, "--log-file", log],
                       str(tmp_path), env)
    if interrupt_after:
        pid = _rank_at_update(slurm, job, save_dir, log, interrupt_after)
        # `scancel --signal`, like --signal=USR1@120, reaches every process of the job's steps (the
        # training ranks) but not the batch shell; --batch (like --signal=B:USR1@120) only the batch shell
        _frozen_until_signalled(pid, lambda: slurm.cmd(
            ["scancel", "--signal=USR1", *(["--batch"] if batch_only else []), job], check=True))
        slurm.start_when_requeued(job)
    state, code, restarts = slurm.wait_done(job)
    out = _job_output(str(tmp_path), job)
    assert (state, code) == ("COMPLETED", 0), f"{state} exit {code}:\n{out[-4000:]}\n{slurm.logs()}"
    assert os.path.exists(os.path.join(save_dir, "checkpoint_20", "bigseq_meta.json"))
    return restarts, train_losses(log), out


@pytest.fixture(scope="module")
def uninterrupted(slurm, tiny_data, tmp_path_factory):
    """srun_per_gpu.sbatch, 2 tasks on one CPU node, no interruption: the reference losses."""
    restarts, losses, out = _run_job(slurm, tmp_path_factory.mktemp("srun"), tiny_data,
                                     "launch/slurm/srun_per_gpu.sbatch", ["--ntasks-per-node=2"])
    return restarts, losses, out


def test_srun_per_gpu_trains_two_ranks(uninterrupted):
    restarts, losses, out = uninterrupted
    assert restarts == 0
    assert sorted(losses) == list(range(1, 21)) and losses[20] < losses[1]
    assert "world size 2" in out


def test_deepspeed_per_node_usr1_requeues_and_matches_uninterrupted(slurm, tiny_data, tmp_path, uninterrupted):
    restarts, losses, out = _run_job(slurm, tmp_path, tiny_data, "launch/slurm/deepspeed_per_node.sbatch", [],
                                     env={"GPUS_PER_NODE": "2"}, interrupt_after=5)
    assert restarts == 1, out[-4000:]
    assert "stopped early (SIGUSR1)" in out and "requeueing" in out and "resumed from" in out
    assert "world size 2" in out
    assert losses == uninterrupted[1]


def test_srun_per_gpu_forwards_usr1_from_the_batch_shell(slurm, tiny_data, tmp_path, uninterrupted):
    restarts, losses, out = _run_job(slurm, tmp_path, tiny_data, "launch/slurm/srun_per_gpu.sbatch",
                                     ["--ntasks-per-node=2"], interrupt_after=5, batch_only=True)
    assert restarts == 1, out[-4000:]
    assert "stopped early (SIGUSR1)" in out and "resumed from" in out
    assert losses == uninterrupted[1]


def test_time_limit_warning_from_slurm_itself_checkpoints_and_requeues(slurm, tiny_data, tmp_path):
    """Nobody sends the signal here: the script's --signal=USR1@S timer fires S seconds before the
    job's time limit (SLURM checks about every 30 s, so it may come that much earlier)."""
    save_dir, log = str(tmp_path / "ck"), str(tmp_path / "train.jsonl")
    endless = [*TINY, "--max-update", "10000000", "--log-interval", "200", "--disable-validation"]
    job = slurm.sbatch("launch/slurm/srun_per_gpu.sbatch", ["--ntasks-per-node=2", "--time=1", "--signal=USR1@40"],
                       [tiny_data, *endless, "--save-dir", save_dir, "--log-file", log], str(tmp_path))
    started = time.monotonic()
    out_path = os.path.join(str(tmp_path), f"bigseq-{job}.out")
    try:
        while not (os.path.exists(out_path) and "requeueing" in _job_output(str(tmp_path), job)):
            state = slurm.job_state(job)
            # SIGNALING: SLURM delivering the --signal this test waits for
            assert state[0] in ("PENDING", "RUNNING", "SIGNALING", "COMPLETING", "REQUEUED"), f"job {job} {state}"
            assert time.monotonic() - started < 120, f"no time-limit signal: {state}\n{slurm.logs()}"
            time.sleep(0.5)
        out = _job_output(str(tmp_path), job)
    finally:
        slurm.cmd(["scancel", job])
    assert "stopped early (SIGUSR1)" in out, out[-3000:]
    stopped_at = int(open(os.path.join(save_dir, "latest")).read().strip().split("_")[-1])
    assert stopped_at > 0 and os.path.exists(os.path.join(save_dir, f"checkpoint_{stopped_at}", "bigseq_meta.json"))
    assert "TIMEOUT" not in slurm.job_state(job)[0]


def _training_processes(save_dir: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if save_dir in (p.info["cmdline"] or [])]


def test_scancel_sigterm_checkpoints_and_a_resubmitted_job_matches_uninterrupted(slurm, tiny_data, tmp_path,
                                                                                uninterrupted):
    """What a preemption or the hard time limit does: SIGTERM to every process of the job, SIGKILL KillWait
    (30 s) later. The ranks finish the update and save in time; the same sbatch line submitted again resumes."""
    save_dir, log = str(tmp_path / "ck"), str(tmp_path / "train.jsonl")
    submit = ["launch/slurm/srun_per_gpu.sbatch", ["--ntasks-per-node=2"],
              [tiny_data, *FLAGS, "--save-dir", save_dir, "--log-file", log], str(tmp_path)]
    job = slurm.sbatch(*submit)
    pid = _rank_at_update(slurm, job, save_dir, log, 5)
    _frozen_until_signalled(pid, lambda: slurm.cmd(["scancel", job], check=True), signal.SIGTERM)
    assert slurm.wait_done(job)[0] == "CANCELLED"
    deadline = time.monotonic() + 60  # the ranks outlive the batch shell until they have saved
    while _training_processes(save_dir):
        assert time.monotonic() < deadline, "training ranks still running a minute after scancel"
        time.sleep(0.2)
    out = _job_output(str(tmp_path), job)
    assert "stopped early (SIGTERM)" in out, out[-3000:]
    stopped_at = int(open(os.path.join(save_dir, "latest")).read().strip().split("_")[-1])
    assert 5 <= stopped_at < 20 and os.path.exists(os.path.join(save_dir, f"checkpoint_{stopped_at}",
                                                                "bigseq_meta.json"))
    again = slurm.sbatch(*submit)
    state, code, _ = slurm.wait_done(again)
    out = _job_output(str(tmp_path), again)
    assert (state, code) == ("COMPLETED", 0), f"{state} exit {code}:\n{out[-4000:]}"
    assert f"at update {stopped_at}" in out
    assert train_losses(log) == uninterrupted[1]
