"""Universal checkpoints: train on 2 ranks with ZeRO-2 (or 3), convert, resume on another world size or stage.

The global batch order does not depend on the world size, so the resumed run must
follow the uninterrupted 2-rank run (fp32, no dropout) to reduction-order noise.
"""

import json
import os
import shutil

import pytest
import torch

from .runner import BIN, MULTI_RANK, run, train

pytestmark = [pytest.mark.slow, pytest.mark.launcher]
SCHEDULE = ["--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4", "--zero-stage", "2"]


def _records(log_file: str) -> dict[int, dict]:
    with open(log_file) as f:
        recs = [json.loads(line) for line in f]
    return {int(r["num_updates"]): r for r in recs if r.get("tag") == "train"}


@pytest.fixture(scope="module")
def two_rank_runs(tiny_data, tmp_path_factory):
    """(straight 12-update log, save dir stopped at update 6) from 2-rank ZeRO-2 runs."""
    root = tmp_path_factory.mktemp("universal")
    straight = str(root / "straight.jsonl")
    train(tiny_data, [*SCHEDULE, "--max-update", "12", "--no-save"], nproc=2, launcher=MULTI_RANK,
          log_file=straight)
    save = str(root / "save")
    train(tiny_data, [*SCHEDULE, "--max-update", "6", "--save-dir", save], nproc=2, launcher=MULTI_RANK,
          log_file=str(root / "first.jsonl"))
    return _records(straight), save


def test_plain_checkpoint_on_other_world_size_is_refused(tiny_data, two_rank_runs, tmp_path):
    _, save = two_rank_runs
    proc = train(tiny_data, [*SCHEDULE, "--max-update", "12", "--save-dir", save], check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()[-1]
    assert "saved by 2 ranks" in err and "bigseq convert universal" in err, err
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def converted(two_rank_runs, tmp_path_factory):
    """A copy of the 2-rank save dir, converted with `bigseq convert universal`."""
    _, save = two_rank_runs
    copy = str(tmp_path_factory.mktemp("converted") / "save")
    shutil.copytree(save, copy)
    proc = run([os.path.join(BIN, "bigseq"), "convert", "universal", copy], check=True)
    assert "checkpoint_6_universal" in proc.stdout
    return copy


def test_convert_of_a_damaged_checkpoint_fails_in_one_line_and_writes_nothing(two_rank_runs, tmp_path):
    _, save = two_rank_runs
    damaged = str(tmp_path / "save")
    shutil.copytree(save, damaged)
    os.remove(os.path.join(damaged, "checkpoint_6", "zero_pp_rank_1_mp_rank_00_optim_states.pt"))
    proc = run([os.path.join(BIN, "bigseq"), "convert", "universal", damaged])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "*** 1. Extracting ZeRO fragments" in proc.stderr  # DeepSpeed's progress is passed on
    last = proc.stderr.strip().splitlines()[-1]
    assert "ds_to_universal failed on" in last and "check that the checkpoint is complete" in last, last
    assert sorted(os.listdir(damaged)) == sorted(os.listdir(save))  # no staging folder, no latest_universal


def test_convert_writes_a_complete_bigseq_checkpoint(converted):
    tag = "checkpoint_6_universal"
    with open(os.path.join(converted, tag, "bigseq_meta.json")) as f:
        meta = json.load(f)
    assert meta["universal"] and meta["source_tag"] == "checkpoint_6" and meta["num_updates"] == 6
    with open(os.path.join(converted, "latest_universal")) as f:
        assert f.read().strip() == tag
    assert not [n for n in os.listdir(converted) if n.startswith(".convert-")]  # the staging folder is gone


# shrink, the flag on the same world size, and growth to an uneven split with another stage
@pytest.mark.parametrize("nproc,stage,flag", [(1, 2, False), (2, 1, True), (4, 3, False)])
def test_resume_on_other_world_size_follows_two_rank_run(tiny_data, two_rank_runs, converted, tmp_path,
                                                         nproc, stage, flag):
    straight, _ = two_rank_runs
    save = str(tmp_path / "save")
    shutil.copytree(converted, save)
    log = str(tmp_path / "resumed.jsonl")
    args = [*SCHEDULE, "--zero-stage", str(stage), "--max-update", "12", "--save-dir", save]
    proc = train(tiny_data, args + (["--universal-checkpoint"] if flag else []), nproc=nproc,
                 launcher="bigseq" if nproc == 1 else MULTI_RANK, log_file=log)
    assert "resumed from" in proc.stdout and "at update 6" in proc.stdout
    resumed = _records(log)
    assert sorted(resumed) == list(range(7, 13))  # the update counter continues
    for n in range(7, 13):  # same lr, and same samples in the same global order (else the losses differ)
        assert resumed[n]["lr"] == pytest.approx(straight[n]["lr"], rel=1e-9), f"lr at update {n}"
        assert resumed[n]["gnorm"] == pytest.approx(straight[n]["gnorm"], rel=1e-3), f"gnorm at update {n}"
        assert abs(resumed[n]["loss"] - straight[n]["loss"]) <= 1e-4, \
            f"update {n}: {resumed[n]['loss']} vs {straight[n]['loss']}"
    with open(os.path.join(save, "latest")) as f:  # the resumed run saves an ordinary checkpoint
        assert f.read().strip() == "checkpoint_12"


def _last_error_line(proc) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def test_plain_checkpoint_into_another_zero_stage_is_refused(tiny_data, two_rank_runs):
    _, save = two_rank_runs  # a plain ZeRO-2 checkpoint: DeepSpeed's stage-3 loader reads other files
    proc = train(tiny_data, [*SCHEDULE, "--zero-stage", "3", "--max-update", "12", "--save-dir", save], check=False)
    err = _last_error_line(proc)
    assert "saved with ZeRO stage 2, this run uses stage 3" in err and "bigseq convert universal" in err, err


def test_universal_into_zero_stage_0_is_refused(tiny_data, converted, tmp_path):
    save = str(tmp_path / "save")
    shutil.copytree(converted, save)
    proc = train(tiny_data, [*SCHEDULE, "--zero-stage", "0", "--max-update", "12", "--save-dir", save], check=False)
    assert "--zero-stage 1, 2 or 3" in _last_error_line(proc)


def test_universal_from_an_older_converter_names_the_reconversion(tiny_data, converted, tmp_path):
    save = str(tmp_path / "save")
    shutil.copytree(converted, save)
    meta_file = os.path.join(save, "checkpoint_6_universal", "bigseq_meta.json")
    with open(meta_file) as f:
        meta = json.load(f)
    del meta["loads_into_any_zero_stage"]  # as written before the layout for every stage
    with open(meta_file, "w") as f:
        json.dump(meta, f)
    proc = train(tiny_data, [*SCHEDULE, "--zero-stage", "3", "--max-update", "12", "--save-dir", save], check=False)
    err = _last_error_line(proc)
    assert "--zero-stage 1 or 2" in err and f"bigseq convert universal {os.path.join(save, 'checkpoint_6')}" in err


@pytest.fixture(scope="module")
def converted_zero3(tiny_data, tmp_path_factory):
    """A 2-rank ZeRO-3 save dir stopped at update 6, converted to universal."""
    save = str(tmp_path_factory.mktemp("universal_zero3") / "save")
    train(tiny_data, [*SCHEDULE, "--zero-stage", "3", "--max-update", "6", "--save-dir", save], nproc=2,
          launcher=MULTI_RANK)
    run([os.path.join(BIN, "bigseq"), "convert", "universal", save], check=True)
    return save


def test_zero3_universal_holds_the_consolidated_weights(converted_zero3):
    from bigseq.checkpoint import files, inference
    meta = files.read_meta(os.path.join(converted_zero3, "checkpoint_6"))
    weights = inference.consolidated_state_dict(converted_zero3, "checkpoint_6", meta)
    universal = inference.universal_state_dict(os.path.join(converted_zero3, "checkpoint_6_universal"))
    assert sorted(universal) == sorted(weights)
    for name, tensor in weights.items():  # in the model's shapes, as stage 1-2 and inference read them
        assert torch.equal(universal[name], tensor), name


def test_zero3_universal_resumes_with_zero2_on_one_rank(tiny_data, two_rank_runs, converted_zero3, tmp_path):
    straight, _ = two_rank_runs
    save = str(tmp_path / "save")
    shutil.copytree(converted_zero3, save)
    log = str(tmp_path / "resumed.jsonl")
    proc = train(tiny_data, [*SCHEDULE, "--zero-stage", "2", "--max-update", "12", "--save-dir", save], log_file=log)
    assert "resumed from" in proc.stdout and "at update 6" in proc.stdout
    resumed = _records(log)
    assert sorted(resumed) == list(range(7, 13))
    for n in range(7, 13):  # the ZeRO-3 half ran the same global batches: the 2-rank ZeRO-2 run's numbers
        assert resumed[n]["lr"] == pytest.approx(straight[n]["lr"], rel=1e-9), f"lr at update {n}"
        assert abs(resumed[n]["loss"] - straight[n]["loss"]) <= 1e-4, \
            f"update {n}: {resumed[n]['loss']} vs {straight[n]['loss']}"
