"""SIGKILL in the middle of a save: `latest` still names a complete checkpoint and the run resumes exactly.

The run pauses inside checkpoint/manager.save at the one point where a crash is dangerous (DeepSpeed
wrote the tag's files, bigseq's meta and `latest` not yet) when BIGSEQ_TEST_PAUSE_AFTER_SAVE_FILES
names the tag, and marks the pause with `<save_dir>/<tag>.paused`: the test kills it there, every time.
"""

import os
import subprocess
import time

from .runner import BIN, ROOT, TINY, kill_tree, train, train_losses

META = "bigseq_meta.json"
KILLED_IN = "checkpoint_6"


def _partial_save_in_progress(save_dir: str) -> bool:
    try:
        names = os.listdir(save_dir)
    except FileNotFoundError:
        return False
    return any(n.startswith("checkpoint_") and os.path.isdir(os.path.join(save_dir, n))
               and not os.path.exists(os.path.join(save_dir, n, META)) for n in names)


def _wait_for(path: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, f"the run ended before {path} appeared"
        assert time.monotonic() < deadline, f"no {path} within {timeout}s"
        time.sleep(0.05)


def test_sigkill_mid_save_resumes_from_last_complete(tiny_data, tmp_path):
    args = ["--max-update", "20", "--save-interval-updates", "1", "--dropout", "0.1"]
    ref_log = str(tmp_path / "ref.jsonl")
    train(tiny_data, [*args, "--save-dir", str(tmp_path / "ref")], log_file=ref_log)
    reference = train_losses(ref_log)

    save, log = str(tmp_path / "ck"), str(tmp_path / "log.jsonl")
    cmd = [os.path.join(BIN, "bigseq"), "train", tiny_data, *TINY, *args, "--save-dir", save, "--log-file", log]
    victim = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "BIGSEQ_TEST_PAUSE_AFTER_SAVE_FILES": KILLED_IN},
                              start_new_session=True)
    try:
        _wait_for(os.path.join(save, f"{KILLED_IN}.paused"), victim)
    finally:
        kill_tree(victim)  # SIGKILL
    assert os.listdir(os.path.join(save, KILLED_IN)) and _partial_save_in_progress(save), \
        "the run was not killed half-way through a save"

    tag = open(os.path.join(save, "latest")).read().strip()
    assert os.path.exists(os.path.join(save, tag, META)), f"latest names the partial checkpoint {tag}"
    resumed_at = int(tag.split("_")[1])
    assert resumed_at == 5  # the save before the killed one
    proc = train(tiny_data, [*args, "--save-dir", save], log_file=log)
    assert f"resumed from {save} at update {resumed_at}" in proc.stdout
    losses = train_losses(log)
    for n in range(resumed_at + 1, 21):
        assert losses[n] == reference[n], f"update {n}: {losses[n]} != {reference[n]}"
