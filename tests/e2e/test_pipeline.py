"""Pipeline parallelism through the real launcher: same per-update losses as no pipeline on one rank."""

import json
import math
import os
import re

import pytest

from .runner import BIN, MULTI_RANK, run, train, train_losses
from .test_bad_input import assert_one_clear_line

UPDATES = 6
# gpt2_tiny ties input/output embeddings (TiedLayerSpec across stages); llama_tiny does not
STYLES = {"llama_untied": ["--arch", "llama_tiny"], "gpt2_tied": ["--arch", "gpt2_tiny", "--dropout", "0"]}
COMMON = ["--update-freq", "2", "--max-update", str(UPDATES)]
pytestmark = pytest.mark.slow


def _losses(tiny_data, tmp_path, name, args, nproc=1):
    log = str(tmp_path / f"{name}.jsonl")
    proc = train(tiny_data, args + ["--log-file", log], nproc=nproc,
                 launcher=MULTI_RANK if nproc > 1 else "bigseq")
    return train_losses(log), proc


def _gnorms(log: str) -> dict[int, float]:
    with open(log) as f:
        return {r["num_updates"]: r["gnorm"] for r in map(json.loads, f) if r.get("tag") == "train"}


def _assert_close(got, want, atol=1e-5):
    assert sorted(got) == sorted(want) == list(range(1, UPDATES + 1))
    for n in want:
        assert abs(got[n] - want[n]) <= atol, f"update {n}: {got[n]} vs {want[n]}"


@pytest.mark.launcher
@pytest.mark.parametrize("style", sorted(STYLES))
def test_two_stages_match_no_pipeline(tiny_data, tmp_path, style):
    args = [*COMMON, *STYLES[style], "--no-save", "--clip-norm", "1.0"]
    want, _ = _losses(tiny_data, tmp_path, "plain", args)
    assert want[UPDATES] < want[1] - 0.5  # it learns
    got, proc = _losses(tiny_data, tmp_path, "pp2", [*args, "--pipeline-parallel-size", "2"], nproc=2)
    assert "pipeline: 2 stages x 1 data-parallel" in proc.stdout
    assert "bubble 33.3% (1F1B, 2 micro-batches)" in proc.stdout  # (P - 1) / (M + P - 1) = 1/3
    _assert_close(got, want)
    # the global gradient norm (all stages, a tied matrix once) is the plain model's, clipping included
    _assert_close(_gnorms(str(tmp_path / "pp2.jsonl")), _gnorms(str(tmp_path / "plain.jsonl")), atol=1e-4)


@pytest.mark.launcher
def test_two_stages_by_two_replicas_match_one_rank(tiny_data, tmp_path):
    args = [*COMMON, *STYLES["gpt2_tied"], "--no-save"]
    want, _ = _losses(tiny_data, tmp_path, "plain", args)
    got, proc = _losses(tiny_data, tmp_path, "pp2dp2", [*args, "--pipeline-parallel-size", "2", "--zero-stage", "1",
                                                       "--pipeline-partition-method", "type:decoderlayer"], nproc=4)
    assert "pipeline: 2 stages x 2 data-parallel" in proc.stdout
    _assert_close(got, want)


@pytest.mark.launcher
def test_pipeline_resume_is_exact_and_validates(tiny_data, tmp_path):
    args = [*STYLES["llama_untied"], "--update-freq", "2", "--pipeline-parallel-size", "2",
            "--pipeline-partition-method", "uniform"]
    straight, _ = _losses(tiny_data, tmp_path, "straight", [*args, "--max-update", "10", "--save-dir",
                                                             str(tmp_path / "a")], nproc=2)
    save = str(tmp_path / "b")
    _losses(tiny_data, tmp_path, "first", [*args, "--max-update", "5", "--save-dir", save], nproc=2)
    resumed, proc = _losses(tiny_data, tmp_path, "resumed", [*args, "--max-update", "10", "--save-dir", save],
                            nproc=2)
    assert "resumed from" in proc.stdout
    assert sorted(resumed) == list(range(6, 11))
    for n in range(6, 11):
        assert resumed[n] == straight[n], f"update {n}: {resumed[n]} != {straight[n]}"
    # the pipeline checkpoint consolidates into the plain model for inference
    out = run([os.path.join(BIN, "bigseq"), "validate", save], check=True)
    valid_loss = float(re.search(r"loss (\d+\.\d+)", out.stdout).group(1))
    out = run([os.path.join(BIN, "bigseq"), "eval-lm", save, "--gen-subset", "valid"], check=True)
    eval_loss = float(re.search(r"loss (\d+\.\d+) nats/token", out.stdout).group(1))
    assert abs(eval_loss - valid_loss) < 1e-3 and eval_loss < math.log(300) - 1  # the trained weights
    out = run([os.path.join(BIN, "bigseq"), "generate", save, "--prompt", "the cat", "--max-new-tokens", "6"],
              check=True)
    assert "the cat" in out.stdout and len(out.stdout.strip().split()) > 2


def _assert_same_to_rounding(got, want):
    # replaying a dropout mask wrongly moves these losses by 1e-3 or more (tried: recompute without
    # restoring the RNG state); CPU kernels have been seen to differ by 7e-6 between two runs of the
    # same fp32 forward (once, in CI), so bit-for-bit equality is not asked for
    assert sorted(got) == sorted(want) == [1, 2, 3]
    for n in want:
        assert abs(got[n] - want[n]) <= 1e-4, f"update {n}: {got[n]} vs {want[n]}"


@pytest.mark.launcher
def test_activation_checkpointing_changes_no_loss(tiny_data, tmp_path):
    """Recomputation replays the forward (fp32, dropout on) for the plain model and for pipeline stages,
    the latter through the ds_configs/pipeline.json template."""
    args = ["--arch", "gpt2_tiny", "--update-freq", "2", "--max-update", "3", "--no-save"]
    recompute = ["--activation-checkpointing", "--checkpoint-interval", "2"]
    plain, _ = _losses(tiny_data, tmp_path, "plain", args)
    plain_ac, proc = _losses(tiny_data, tmp_path, "plain_ac", [*args, *recompute])
    assert "activation checkpointing: every 2 layer(s)" in proc.stdout
    _assert_same_to_rounding(plain_ac, plain)
    pipe = [*args, "--pipeline-parallel-size", "2"]
    piped, _ = _losses(tiny_data, tmp_path, "pp2", pipe, nproc=2)
    piped_ac, proc = _losses(tiny_data, tmp_path, "pp2_ac", [*pipe, *recompute, "--deepspeed-config",
                                                             os.path.join("ds_configs", "pipeline.json")], nproc=2)
    assert "activation checkpointing: every 2 layer(s)" in proc.stdout
    _assert_same_to_rounding(piped_ac, piped)


@pytest.mark.parametrize("flags,needles", [
    (["--pipeline-parallel-size", "2"], ["does not divide the world size 1"]),
    (["--pipeline-parallel-size", "8"], ["more than the 5 pipeline layers", "at most 5"]),
    (["--pipeline-parallel-size", "2", "--pipeline-partition-method", "type:NoSuchLayer"],
     ["NoSuchLayer", "TransformerDecoderLayer"]),
    (["--pipeline-parallel-size", "2", "--zero-stage", "2"], ["--zero-stage 2", "--zero-stage 1"]),
    (["--pipeline-partition-method", "by-magic"], ["by-magic", "type:<LayerClass>"]),
])
def test_bad_pipeline_input_is_one_clear_line(tiny_data, flags, needles):
    proc = train(tiny_data, ["--no-save", "--max-update", "1", *flags], check=False)
    assert_one_clear_line(proc, *needles)


NO_PIPELINE_FAMILY = '''
from dataclasses import dataclass

import torch.nn as nn

from bigseq.models.base import BaseModel
from bigseq.registry import register_architecture, register_model


@dataclass(kw_only=True)
class TinyEncDecConfig:
    embed_dim: int = 16
    """Width of encoder and decoder."""


@register_model("tiny_encdec", TinyEncDecConfig)
class TinyEncDec(BaseModel):  # no pipeline_layers
    def __init__(self, cfg, pad_idx=None):
        super().__init__()
        self.encoder, self.decoder = nn.Linear(cfg.embed_dim, cfg.embed_dim), nn.Linear(cfg.embed_dim, cfg.embed_dim)

    @classmethod
    def build(cls, cfg, task):
        return cls(cfg)


@register_architecture("tiny_encdec", "tiny_encdec")
def tiny_encdec():
    return TinyEncDecConfig()
'''


def test_family_without_pipeline_layers_is_one_clear_line(tiny_data, tmp_path):
    plugin = tmp_path / "no_pipeline_family"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(NO_PIPELINE_FAMILY)
    proc = train(tiny_data, ["--user-dir", str(plugin), "--arch", "tiny_encdec", "--pipeline-parallel-size", "2",
                             "--no-save", "--max-update", "1"], check=False)
    assert_one_clear_line(proc, "pipeline parallelism is not supported for the tiny_encdec family",
                          "--pipeline-parallel-size 1")
