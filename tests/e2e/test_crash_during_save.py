"""SIGKILL in the middle of a save: `latest` still names a complete checkpoint and the run resumes exactly."""

import os
import signal
import subprocess
import time

from .runner import BIN, ROOT, TINY, train, train_losses

META = "bigseq_meta.json"


def _partial_save_in_progress(save_dir: str) -> bool:
    try:
        names = os.listdir(save_dir)
    except FileNotFoundError:
        return False
    return any(n.startswith("checkpoint_") and not os.path.exists(os.path.join(save_dir, n, META)) for n in names)


def test_sigkill_mid_save_resumes_from_last_complete(tiny_data, tmp_path):
    args = ["--max-update", "20", "--save-interval-updates", "1", "--dropout", "0.1"]
    ref_log = str(tmp_path / "ref.jsonl")
    train(tiny_data, [*args, "--save-dir", str(tmp_path / "ref")], log_file=ref_log)
    reference = train_losses(ref_log)

    save, log = str(tmp_path / "ck"), str(tmp_path / "log.jsonl")
    cmd = [os.path.join(BIN, "bigseq"), "train", tiny_data, *TINY, *args, "--save-dir", save, "--log-file", log]
    victim = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught_mid_save = False
    deadline = time.time() + 120
    while victim.poll() is None and time.time() < deadline:
        # wait for a few complete checkpoints, then kill as soon as a save is half-way
        if os.path.exists(os.path.join(save, "checkpoint_5", META)) and _partial_save_in_progress(save):
            caught_mid_save = True
            break
        time.sleep(0.0005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert caught_mid_save, "the run finished before a save could be interrupted"

    tag = open(os.path.join(save, "latest")).read().strip()
    assert os.path.exists(os.path.join(save, tag, META)), f"latest names the partial checkpoint {tag}"
    resumed_at = int(tag.split("_")[1])
    proc = train(tiny_data, [*args, "--save-dir", save], log_file=log)
    assert f"resumed from {save} at update {resumed_at}" in proc.stdout
    losses = train_losses(log)
    for n in range(resumed_at + 1, 21):
        assert losses[n] == reference[n], f"update {n}: {losses[n]} != {reference[n]}"
