"""Every user mistake: one clear line on stderr, exit code 2, no traceback, nothing half-written.

Mistakes caught before any process group run `bigseq` in this process (train_in_process, cli); the ones
found after it starts, and the launcher's, run as subprocesses."""

import os
import shutil
import stat

import pytest

from .runner import cli, train, train_in_process


def assert_one_clear_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "error:" in last, last
    for needle in needles:
        assert needle in last, f"{needle!r} not in {last!r}"


def test_missing_data_dir(tmp_path):
    assert_one_clear_line(train_in_process(str(tmp_path / "nope"), ["--no-save", "--max-update", "1"]), "nope",
                          "bigseq preprocess")


def test_empty_data_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_clear_line(train_in_process(str(tmp_path / "empty"), ["--no-save", "--max-update", "1"]), "empty")


def test_missing_split(tiny_data, tmp_path):
    assert_one_clear_line(train_in_process(tiny_data, ["--no-save", "--max-update", "1", "--valid-subset", "test"]),
                          "test")
    assert_one_clear_line(train_in_process(tiny_data, ["--no-save", "--max-update", "1", "--train-subset", "tarin"]),
                          "tarin")


def test_corrupt_index(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    idx = data / "train.idx"
    idx.write_bytes(idx.read_bytes()[:40])  # truncated
    assert_one_clear_line(train_in_process(str(data), ["--no-save", "--max-update", "1"]), "train.idx")


@pytest.mark.parametrize("flag,value,listed", [("--arch", "lama_tiny", "llama_tiny"),
                                               ("--task", "languag_modeling", "language_modeling"),
                                               ("--criterion", "xent", "cross_entropy"),
                                               ("--optimizer", "adamm", "adamw")])
def test_unknown_component_lists_registered(tiny_data, flag, value, listed):
    assert_one_clear_line(train_in_process(tiny_data, ["--no-save", "--max-update", "1", flag, value]), value, listed)


def test_misspelled_flag_suggests(tiny_data):
    assert_one_clear_line(train_in_process(tiny_data, ["--no-save", "--max-update", "1", "--decoder-layer", "3"]),
                          "--decoder-layer", "did you mean '--decoder-layers'")


def test_unknown_yaml_key_suggests(tiny_data, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_updates: 10\n")
    assert_one_clear_line(train_in_process(tiny_data, ["--no-save", "--max-update", "1", "--config", str(cfg)]),
                          "max_updates", "did you mean 'max_update'")


def test_unwritable_save_dir(tiny_data, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/bigseq-cannot-write-here"  # root ignores permission bits
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        target = str(locked / "ck")
    proc = train_in_process(tiny_data, ["--max-update", "1", "--save-dir", target])
    assert_one_clear_line(proc, "--save-dir", "not writable")


@pytest.mark.launcher
def test_batch_size_world_size_mismatch(tiny_data):
    proc = train(tiny_data, ["--no-save", "--batch-size", "3", "--max-update", "1"], nproc=2, launcher="torchrun",
                 check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr.split("error:")[0][-200:]
    assert "--batch-size 3 is not divisible by the 2 data-parallel ranks" in proc.stderr


def test_resume_other_architecture_and_vocab(tiny_data, tmp_path):
    save = str(tmp_path / "ck")
    train(tiny_data, ["--max-update", "2", "--save-dir", save])
    assert_one_clear_line(train(tiny_data, ["--max-update", "4", "--save-dir", save, "--decoder-layers", "3"],
                                check=False), "another architecture", "decoder_layers")
    other = str(tmp_path / "other-data")
    from .runner import preprocess
    preprocess(str(tmp_path / "raw2"), other, vocab_size=280)
    assert_one_clear_line(train(other, ["--max-update", "4", "--save-dir", save], check=False), "vocabulary")


def test_nonfinite_losses_are_skipped_then_stop(tiny_data, tmp_path):
    log = str(tmp_path / "log.jsonl")
    proc = train(tiny_data, ["--no-save", "--lr", "1e30", "--max-update", "20", "--max-nonfinite-updates", "3"],
                 log_file=log, check=False)
    assert_one_clear_line(proc, "non-finite for 3 updates in a row")
    import json
    records = [json.loads(line) for line in open(log)]
    assert any(r.get("skipped_nonfinite", 0) >= 1 for r in records)


def test_unknown_command_and_bad_checkpoint_path(tmp_path):
    assert_one_clear_line(cli("trian"), "did you mean 'train'")
    assert_one_clear_line(cli("validate", str(tmp_path / "none")), "not found")


def test_build_lock_left_by_a_killed_build(tiny_data, tmp_path):
    """Without the check every run waits on this file forever, printing nothing."""
    lock = tmp_path / "extensions" / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    hour_ago = os.path.getmtime(lock) - 3600
    os.utime(lock, (hour_ago, hour_ago))
    proc = train(tiny_data, ["--no-save", "--max-update", "1"], check=False, timeout=120,
                 env={"TORCH_EXTENSIONS_DIR": str(lock.parent.parent)})
    assert_one_clear_line(proc, f"rm {lock}", "killed mid-way")
