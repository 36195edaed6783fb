"""Progress bars: simple/json/tqdm output, JSON-lines log file, TensorBoard events."""

import io
import json
import sys

import pytest

from bigseq.errors import BigseqError
from bigseq.logging import close_tensorboard_writers, progress_bar
from bigseq.logging.progress_bar import SimpleProgressBar, TqdmProgressBar

STATS = {"loss": 5.12345, "ppl": 167.83, "lr": 3e-4, "gnorm": 1.2, "tok/s": 4520.3, "tflops": 0.0213, "wall": 12.4}


def run_epoch(bar, n_log=10):
    for i, _ in enumerate(bar, start=1):
        if i % n_log == 0:
            bar.log(STATS, tag="train_inner", step=i)
    bar.print({"loss": 4.0, "ppl": 54.6}, tag="train", step=len(bar))


def test_simple_one_readable_line_per_log():
    out = io.StringIO()
    run_epoch(progress_bar(range(20), log_format="simple", log_interval=10, epoch=1, stream=out))
    stats = "loss 5.12 | ppl 168 | lr 0.0003 | gnorm 1.2 | tok/s 4,520 | model 21.3 GFLOP/s | wall 12s"
    assert out.getvalue().splitlines() == [
        f"epoch 001 | update 10/20 | {stats}",
        f"epoch 001 | update 20/20 | {stats}",
        "epoch 001 | loss 4 | ppl 54.6",
    ]


def test_json_lines_and_log_file_hold_the_same_records(tmp_path):
    out, log_file = io.StringIO(), tmp_path / "logs" / "train.jsonl"
    run_epoch(progress_bar(range(20), log_format="json", epoch=2, log_file=str(log_file), stream=out))
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert printed[0] == {"tag": "train_inner", "epoch": 2, "update": 10, "step": 10, **STATS}
    assert printed[-1] == {"tag": "train", "epoch": 2, "step": 20, "loss": 4.0, "ppl": 54.6}
    assert [json.loads(line) for line in log_file.read_text().splitlines()] == printed
    # the next bar (validation, next epoch) appends to the same file, even with no console output
    with progress_bar([1], log_format="none", epoch=2, prefix="valid", log_file=str(log_file)) as bar:
        bar.print({"loss": 3.5}, tag="valid", step=20)
    assert json.loads(log_file.read_text().splitlines()[-1]) == {"tag": "valid", "epoch": 2, "step": 20, "loss": 3.5}


def test_tqdm_bar_shows_postfix_and_summary():
    out = io.StringIO()
    with progress_bar(range(20), log_format="tqdm", epoch=1, stream=out) as bar:
        run_epoch(bar)
    text = out.getvalue()
    assert "20/20" in text and "loss 5.12" in text and "epoch 001 | loss 4 | ppl 54.6" in text


def test_default_format_is_simple_off_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert isinstance(progress_bar([1], epoch=1), SimpleProgressBar)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress_bar([1], epoch=1, stream=io.StringIO())
    assert isinstance(bar, TqdmProgressBar)
    bar.close()


def test_disabled_rank_writes_nothing(tmp_path):
    out, log_file = io.StringIO(), tmp_path / "train.jsonl"
    bar = progress_bar(range(20), log_format="simple", epoch=1, log_file=str(log_file),
                       tensorboard_logdir=str(tmp_path / "tb"), enabled=False, stream=out)
    run_epoch(bar)
    assert out.getvalue() == "" and not log_file.exists() and not (tmp_path / "tb").exists()


def test_tensorboard_event_files_hold_the_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    run_epoch(progress_bar(range(20), log_format="none", epoch=1, tensorboard_logdir=str(logdir)))
    close_tensorboard_writers()
    events = EventAccumulator(str(logdir / "train_inner"))
    events.Reload()
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == [10, 20] and loss[0].value == pytest.approx(5.12345, rel=1e-6)
    assert list((logdir / "train").glob("events.out.tfevents.*"))


def test_missing_tensorboard_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what an uninstalled package looks like
    with pytest.raises(BigseqError, match="pip install tensorboard"):
        progress_bar([1], log_format="simple", tensorboard_logdir=str(tmp_path))


def test_unknown_format_is_a_user_error():
    with pytest.raises(BigseqError, match="--log-format"):
        progress_bar([1], log_format="fancy")


def test_wandb_gets_the_same_stats_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="the optional wandb extra is not installed")
    from bigseq.logging import finish_wandb_runs
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    runs, real_init = [], wandb.init
    monkeypatch.setattr(wandb, "init", lambda **kw: runs.append(real_init(**kw)) or runs[-1])
    run_epoch(progress_bar(range(20), log_format="none", epoch=1, wandb_project="bigseq-test"))
    assert len(runs) == 1 and runs[0].project == "bigseq-test"
    summary = dict(runs[0].summary)
    assert summary["train_inner/loss"] == STATS["loss"] and summary["train_inner/tflops"] == STATS["tflops"]
    assert summary["train/ppl"] == 54.6 and summary["update"] == 20
    finish_wandb_runs()
    assert [f.stat().st_size > 0 for f in tmp_path.glob("wandb/offline-run-*/run-*.wandb")] == [True]


def test_wandb_missing_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(BigseqError, match=r"--wandb-project needs Weights & Biases; pip install 'bigseq\[wandb\]'"):
        progress_bar([1], log_format="simple", wandb_project="p", stream=io.StringIO())
