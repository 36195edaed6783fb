"""A user's path through the CLIs: preprocess -> train -> validate -> eval-lm -> generate -> finetune.

Training runs as a subprocess (it joins a process group); the commands that do not run in this process."""

import json
import os
import re

from .runner import ROOT, cli, run, train, train_losses


def test_train_validate_eval_generate(tiny_data, tmp_path):
    save, log = str(tmp_path / "ck"), str(tmp_path / "log.jsonl")
    tb = str(tmp_path / "tb")
    proc = train(tiny_data, ["--max-update", "30", "--save-dir", save, "--save-interval-updates", "10",
                             "--keep-last-checkpoints", "2", "--tensorboard-logdir", tb], log_file=log)
    losses = train_losses(log)
    assert losses[30] < losses[1] - 1.0, losses
    records = [json.loads(line) for line in open(log)]
    train_rec = [r for r in records if r.get("tag") == "train"][-1]
    for key in ("loss", "ppl", "lr", "gnorm", "tokens_per_s", "tflops", "wall", "num_updates"):
        assert key in train_rec, key
    valid_rec = [r for r in records if r.get("tag") == "valid"]
    assert valid_rec and valid_rec[-1]["num_updates"] == 30
    assert sorted(d for d in os.listdir(save) if d.startswith("checkpoint_")) == ["checkpoint_20", "checkpoint_30"]
    assert open(os.path.join(save, "latest")).read() == "checkpoint_30"
    assert any(f.startswith("events.") for _, _, fs in os.walk(tb) for f in fs)
    assert "done: 30 updates" in proc.stdout

    out = cli("validate", save)
    assert out.returncode == 0, out.stderr[-2000:]
    valid_loss = float(re.search(r"loss ([\d.]+)", out.stdout).group(1))
    assert abs(valid_loss - valid_rec[-1]["loss"]) < 1e-3  # same number as the training run's validation

    out = cli("eval-lm", save, "--gen-subset", "valid")
    assert out.returncode == 0, out.stderr[-2000:]
    ppl = float(re.search(r"ppl ([\d.]+)", out.stdout).group(1))
    assert 1.0 < ppl < 30.0, out.stdout

    out = cli("generate", save, "--prompt", "the cat", "--max-new-tokens", "8")
    assert out.returncode == 0 and out.stdout.startswith("P\tthe cat\nH\t"), out.stdout + out.stderr[-2000:]
    out = cli("generate", os.path.join(save, "checkpoint_20"), "--sampling", "--sampling-topp", "0.9",
                 "--max-new-tokens", "8", stdin="a dog\nmy model\n")
    assert out.returncode == 0 and out.stdout.count("H\t") == 2, out.stdout + out.stderr[-2000:]

    # weights only: a fresh schedule and data position, but the trained model's loss from the first update
    ft_log = str(tmp_path / "ft.jsonl")
    train(tiny_data, ["--max-update", "2", "--no-save", "--finetune-from-model", save], log_file=ft_log)
    assert train_losses(ft_log)[1] < losses[1] - 1.0


def test_python_launch_script_matches_bigseq_train(tiny_data, tmp_path):
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    train(tiny_data, ["--max-update", "3", "--no-save"], log_file=a)
    import sys
    run([sys.executable, os.path.join(ROOT, "launch", "train.py"), tiny_data, "--arch", "llama_tiny",
         "--tokens-per-sample", "32", "--batch-size", "8", "--lr", "0.003", "--log-interval", "1",
         "--log-format", "json", "--max-update", "3", "--no-save", "--log-file", b], check=True)
    assert train_losses(a) == train_losses(b)


def test_yaml_config_and_flag_override(tiny_data, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("arch: gpt2_tiny\nmax_update: 5\nlr: 0.001\nlr_scheduler: inverse_sqrt\nwarmup_updates: 4\n")
    log = str(tmp_path / "log.jsonl")
    proc = train(tiny_data, ["--config", str(cfg), "--max-update", "3", "--no-save"], log_file=log)
    # the runner's flags (--arch llama_tiny --lr 0.003) and --max-update 3 win over the file
    assert "model llama_tiny" in proc.stdout
    recs = [json.loads(line) for line in open(log) if '"train"' in line]
    assert [r["num_updates"] for r in recs] == [1, 2, 3]
    assert abs(recs[0]["lr"] - 0.003 * 1 / 4) < 1e-9  # the YAML's scheduler and warmup, after 1 update


def test_help_lists_fields_and_registered_names():
    out = cli("train", "--help")
    assert out.returncode == 0
    for text in ("--decoder-layers", "--share-decoder-input-output-embed", "--zero-stage", "--update-freq",
                 "llama_7b", "gpt2_xl", "label_smoothed_cross_entropy", "adafactor", "wsd", "--warmup-updates"):
        assert text in out.stdout, text
