"""Changing --pipeline-parallel-size mid-run through universal checkpoints, and refusing it without one.

gpt2_tiny (tied input/output embeddings: one module on the first and the last
stage), fp32, no dropout, ZeRO-1, one data-parallel replica at every pipeline
size: a resumed run must follow the uninterrupted 2-stage run to fp32 noise.
"""

import json
import os
import shutil

import pytest
import torch

from bigseq.checkpoint.convert import build_consolidated_model
from bigseq.checkpoint.inference import load_for_inference

from .runner import BIN, MULTI_RANK, run, train, train_losses

pytestmark = [pytest.mark.slow, pytest.mark.launcher]
ARGS = ["--arch", "gpt2_tiny", "--dropout", "0", "--update-freq", "2", "--zero-stage", "1", "--lr-scheduler",
        "inverse_sqrt", "--warmup-updates", "4", "--pipeline-partition-method", "uniform"]
SAVED_AT, UPDATES = 4, 8


def _train(data, stages, args, log=None, check=True):
    # one data-parallel replica: ranks = stages; a refusal goes through the deepspeed launcher, whose output
    # is the ranks' own (torchrun adds its own traceback of the failed child)
    launcher = "bigseq" if stages == 1 else MULTI_RANK if check else "deepspeed"
    return train(data, [*ARGS, "--pipeline-parallel-size", str(stages), *args], nproc=stages, launcher=launcher,
                 log_file=log, check=check)


def _records(log_file: str) -> dict[int, dict]:
    with open(log_file) as f:
        return {int(r["num_updates"]): r for r in map(json.loads, f) if r.get("tag") == "train"}


def _convert(save: str, copy: str) -> str:
    shutil.copytree(save, copy)
    run([os.path.join(BIN, "bigseq"), "convert", "universal", copy], check=True)
    return copy


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """(uninterrupted 2-stage log records, 2-stage save dir at update 4, its universal-converted copy)."""
    root = tmp_path_factory.mktemp("pipeline_universal")
    _train(tiny_data, 2, ["--max-update", str(UPDATES), "--no-save"], log=str(root / "straight.jsonl"))
    save = str(root / "save")
    _train(tiny_data, 2, ["--max-update", str(SAVED_AT), "--save-dir", save])
    return _records(str(root / "straight.jsonl")), save, _convert(save, str(root / "converted"))


def _assert_follows(straight: dict, log: str) -> float:
    resumed = _records(log)
    assert sorted(resumed) == list(range(SAVED_AT + 1, UPDATES + 1))  # the update counter continues
    for n in resumed:  # same lr (schedule), samples (data position) and moments (else gnorm/loss differ)
        assert resumed[n]["lr"] == pytest.approx(straight[n]["lr"], rel=1e-9), f"lr at update {n}"
        assert resumed[n]["gnorm"] == pytest.approx(straight[n]["gnorm"], rel=1e-4), f"gnorm at update {n}"
        assert abs(resumed[n]["loss"] - straight[n]["loss"]) <= 1e-4, f"update {n}"
    return max(abs(resumed[n]["loss"] - straight[n]["loss"]) for n in resumed)


@pytest.mark.parametrize("stages", [1, 4])
def test_two_stages_continue_on_another_pipeline_size(tiny_data, runs, tmp_path, stages):
    straight, _, converted = runs
    save = str(tmp_path / "save")
    shutil.copytree(converted, save)
    log = str(tmp_path / "resumed.jsonl")
    proc = _train(tiny_data, stages, ["--max-update", str(UPDATES), "--save-dir", save], log=log)
    assert f"at update {SAVED_AT}" in proc.stdout
    print(f"2 -> {stages} stages: max |loss delta| {_assert_follows(straight, log):.2e}")
    with open(os.path.join(save, "latest")) as f:  # and saves an ordinary checkpoint of its own layout
        assert f.read().strip() == f"checkpoint_{UPDATES}"


def test_one_stage_continues_on_two_stages(tiny_data, runs, tmp_path):
    straight, _, _ = runs
    save = str(tmp_path / "save")
    _train(tiny_data, 1, ["--max-update", str(SAVED_AT), "--save-dir", save])
    # unconverted, the plain checkpoint is refused by the 2-stage run, naming both sizes and the fix
    proc = _train(tiny_data, 2, ["--max-update", str(UPDATES), "--save-dir", save], check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert (f"checkpoint {save}/checkpoint_{SAVED_AT} was saved with --pipeline-parallel-size 1, this run has "
            f"--pipeline-parallel-size 2") in out and "`bigseq convert universal" in out, out[-3000:]
    converted = _convert(save, str(tmp_path / "converted"))
    log = str(tmp_path / "resumed.jsonl")
    _train(tiny_data, 2, ["--max-update", str(UPDATES), "--save-dir", converted], log=log)
    print(f"1 -> 2 stages: max |loss delta| {_assert_follows(straight, log):.2e}")


def test_pipeline_checkpoint_into_one_stage_is_refused(tiny_data, runs):
    _, save, _ = runs
    proc = _train(tiny_data, 1, ["--max-update", str(UPDATES), "--save-dir", save], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "saved with --pipeline-parallel-size 2, this run has --pipeline-parallel-size 1" in last, last
    assert "resume with --pipeline-parallel-size 2" in last and "`bigseq convert universal" in last, last


def test_zero0_pipeline_checkpoint_names_the_fix(tiny_data, tmp_path):
    save = str(tmp_path / "save")
    _train(tiny_data, 2, ["--max-update", "1", "--zero-stage", "0", "--save-dir", save])
    proc = _train(tiny_data, 1, ["--max-update", "2", "--zero-stage", "0", "--save-dir", save], check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "--pipeline-parallel-size 2" in last and "--zero-stage 1" in last, last
    proc = run([os.path.join(BIN, "bigseq"), "convert", "universal", save])
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "ZeRO stage 0" in last and "--zero-stage 1" in last, last
    assert sorted(os.listdir(save)) == ["checkpoint_1", "latest"]  # nothing half-written


def test_pipeline_checkpoint_consolidates_and_finetunes_both_ways(tiny_data, runs, tmp_path):
    straight, save, converted = runs
    convert = [os.path.join(BIN, "bigseq"), "convert"]
    run([*convert, "to-safetensors", save, str(tmp_path / "st")], check=True)
    run([*convert, "to-hf", save, str(tmp_path / "hf")], check=True)
    ours = build_consolidated_model(str(tmp_path / "st"))
    tokens_BT = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 7], [1, 2, 3, 4, 5, 6, 7, 8]])
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens_BT).logits, ours(tokens_BT), rtol=1e-5, atol=1e-5)
    # the universal conversion holds the same weights, under the plain model's names
    _, _, from_universal, _ = load_for_inference(os.path.join(converted, f"checkpoint_{SAVED_AT}_universal"))
    for name, tensor in ours.state_dict().items():
        assert torch.equal(from_universal.state_dict()[name], tensor), name
    # the consolidated folder fine-tunes a 2-stage run exactly as a plain one: same first loss
    logs = {stages: str(tmp_path / f"tuned{stages}.jsonl") for stages in (1, 2)}
    for stages, log in logs.items():
        _train(tiny_data, stages, ["--max-update", "1", "--no-save", "--finetune-from-model",
                                   str(tmp_path / "st")], log=log)
    first = {stages: train_losses(log)[1] for stages, log in logs.items()}
    assert abs(first[2] - first[1]) <= 1e-5, first
    assert first[2] < straight[1]["loss"] - 0.3  # the trained weights, not a fresh model's
