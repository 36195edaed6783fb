"""`accelerate launch --use_deepspeed --deepspeed_config_file ...` runs bigseq with that DeepSpeed config."""

import os

import pytest

from .runner import BIN, ROOT, TINY, TRAIN_PY, free_port, run, train, train_losses

pytestmark = [pytest.mark.slow, pytest.mark.launcher]


def test_accelerate_two_processes_match_one_rank_and_use_its_config(tiny_data, tmp_path):
    ref_log, log = str(tmp_path / "ref.jsonl"), str(tmp_path / "acc.jsonl")
    train(tiny_data, ["--max-update", "4", "--no-save"], log_file=ref_log)
    cmd = [os.path.join(BIN, "accelerate"), "launch", "--use_deepspeed", "--deepspeed_config_file",
           os.path.join(ROOT, "ds_configs", "zero2.json"), "--zero_stage", "2", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
           "--dynamo_backend", "no", TRAIN_PY, tiny_data, *TINY, "--max-update", "4", "--no-save", "--log-file", log]
    proc = run(cmd, check=True, timeout=300, env={"ACCELERATE_USE_CPU": "1"})
    assert "world size 2 | ZeRO 2 |" in proc.stdout  # stage 2 came from the accelerate config file
    ref, got = train_losses(ref_log), train_losses(log)
    assert sorted(got) == sorted(ref) == [1, 2, 3, 4]
    assert all(abs(got[n] - ref[n]) <= 2e-5 for n in ref), (got, ref)
