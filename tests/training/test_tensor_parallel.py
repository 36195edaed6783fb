"""--tensor-parallel-size without processes: which of bigseq's parameters the AutoTP rules shard and how,
the refusals (one line each), the DeepSpeed config section, and the universal-checkpoint schema merge."""

import re
from types import SimpleNamespace

import pytest
import torch.nn as nn
from deepspeed.checkpoint.constants import PIPELINE_REPLICATED_PARAMETER_PATTERNS, UNIVERSAL_CHECKPOINT_INFO
from deepspeed.module_inject.autotp_config import AutoTPConfig, PartitionType

from bigseq.checkpoint import compat, manager
from bigseq.config.train_config import parse_train_config, train_config_to_dict
from bigseq.distributed import tensor_parallel
from bigseq.distributed.engine import build_ds_config
from bigseq.distributed.launch_env import DistEnv
from bigseq.errors import BigseqError
from bigseq.models.family import get_family


def _cfg(*flags, arch="llama_tiny"):
    return parse_train_config(["data-bin", "--batch-size", "8", "--arch", arch, *flags])


def _partitioning(arch: str, *flags) -> dict[str, str]:
    """Linear/Embedding module name -> the partition type DeepSpeed's own matcher picks (or 'whole')."""
    cfg = _cfg(*flags, arch=arch)
    cfg.model.vocab_size = 300
    model = get_family("transformer_lm").build(cfg.model, SimpleNamespace(vocab_size=300, pad_idx=1), 1)
    rules = AutoTPConfig.from_dict(tensor_parallel.ds_section(2)["partition_config"])
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            spec = rules.find_matching_spec(name + ".weight")
            out[name] = spec.partition_type.value if spec else "whole"
    return out


@pytest.mark.parametrize("arch", ["llama_tiny", "gpt2_tiny"])
def test_rules_split_attention_and_ffn_megatron_style_and_leave_embeddings_whole(arch):
    got = _partitioning(arch)
    by_kind = {}
    for name, kind in got.items():
        by_kind.setdefault(re.sub(r"^layers\.\d+\.", "", name), set()).add(kind)
    gated = arch == "llama_tiny"
    want = {"attn.q_proj": {"column"}, "attn.k_proj": {"column"}, "attn.v_proj": {"column"},
            "attn.out_proj": {"row"}, "ffn.up_proj": {"column"}, "ffn.down_proj": {"row"},
            **({"ffn.gate_proj": {"column"}} if gated else {})}
    for name, kinds in want.items():
        assert by_kind.pop(name) == kinds, name
    # what is left (token/position embeddings, the output projection read as a weight) stays whole
    assert by_kind and all(kinds == {"whole"} for kinds in by_kind.values()), by_kind


def test_per_head_qk_norms_stay_whole_with_summed_gradients():
    rules = AutoTPConfig.from_dict(tensor_parallel.ds_section(2)["partition_config"])
    spec = rules.find_matching_spec("layers.0.attn.q_norm.weight")
    assert spec.partition_type == PartitionType.SKIP and spec.grad_allreduce
    assert rules.find_matching_spec("layers.0.attn_norm.weight") is None


def test_ds_config_carries_the_section_and_dp_sized_batches():
    ds = build_ds_config(_cfg("--tensor-parallel-size", "2", "--zero-stage", "1"), dp_size=2)
    assert ds["tensor_parallel"]["autotp_size"] == 2
    assert ds["tensor_parallel"]["partition_config"]["use_default_specs"] is False
    # micro-batches are slices of the data-parallel batch; DeepSpeed's total counts each TP copy
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["train_batch_size"] == 16
    assert "tensor_parallel" not in build_ds_config(_cfg(), dp_size=1)


@pytest.mark.parametrize("flags,needles", [
    (["--tensor-parallel-size", "2", "--pipeline-parallel-size", "2"], ["--pipeline-parallel-size"]),
    (["--tensor-parallel-size", "2", "--sequence-parallel-size", "2"], ["--sequence-parallel-size"]),
    (["--tensor-parallel-size", "3"], ["--decoder-attention-heads 4"]),
    (["--tensor-parallel-size", "4"], ["KV heads", "--decoder-kv-heads 2"]),
    (["--tensor-parallel-size", "4", "--decoder-kv-heads", "4", "--decoder-ffn-embed-dim", "90"],
     ["--decoder-ffn-embed-dim 90"]),
    (["--tensor-parallel-size", "2", "--qk-norm", "full"], ["--qk-norm full"]),
    (["--tensor-parallel-size", "0"], ["must be >= 1"]),
])
def test_bad_inputs_are_one_line(flags, needles):
    with pytest.raises(BigseqError) as e:
        tensor_parallel.check_config(_cfg(*flags))
    assert "\n" not in str(e.value) and all(n in str(e.value) for n in needles), str(e.value)


def test_a_translation_model_is_refused():
    cfg = parse_train_config(["data-bin", "--batch-size", "8", "--task", "translation", "--arch",
                              "transformer_tiny", "--tensor-parallel-size", "2"])
    with pytest.raises(BigseqError, match="transformer_lm"):
        tensor_parallel.check_config(cfg)


def test_tp_must_divide_the_world():
    tensor_parallel.check_world(2, 4)
    with pytest.raises(BigseqError, match="does not divide the world size 3"):
        tensor_parallel.check_world(2, 3)


def test_universal_info_keeps_autotp_schema():
    """Regression: bigseq's client_state used to replace AutoTP's schema, so ds_to_universal concatenated
    replicated weights (numel 16384 != 8192)."""
    autotp = {"universal_checkpoint_version": 0.3, "tp_replicated_parameter_patterns": [r"embed\."],
              "tp_row_parallel_patterns": [r".*out_proj"]}
    module = SimpleNamespace(**{UNIVERSAL_CHECKPOINT_INFO: autotp})
    info = manager.universal_info(module)
    assert {k: info[k] for k in autotp} == autotp  # AutoTP's keys and version win
    assert info[PIPELINE_REPLICATED_PARAMETER_PATTERNS] == [r"tied_modules\."]
    assert PIPELINE_REPLICATED_PARAMETER_PATTERNS not in autotp  # a copy: the model's own stays as it was
    plain = manager.universal_info(nn.Linear(2, 2))
    assert plain == {"universal_checkpoint_version": 0.2, PIPELINE_REPLICATED_PARAMETER_PATTERNS: [r"tied_modules\."]}


def test_a_checkpoint_of_another_tp_size_is_refused_unless_universal():
    saved = _cfg("--tensor-parallel-size", "2")
    meta = {"cfg": train_config_to_dict(saved), "names": saved.names, "vocab_size": 300, "world_size": 2,
            "zero_stage": 1}
    trainer = SimpleNamespace(cfg=_cfg(), task=SimpleNamespace(vocab_size=300), num_stages=1,
                              env=DistEnv(rank=0, world_size=1, local_rank=0),
                              engine=SimpleNamespace(zero_optimization_stage=lambda: 1))
    with pytest.raises(BigseqError, match="--tensor-parallel-size 2 shards, this run uses 1"):
        compat.check_compatible(meta, trainer, "save/checkpoint_4")
    compat.check_compatible({**meta, "universal": True}, trainer, "save/checkpoint_4_universal")


def test_inference_refuses_a_tp_checkpoint_and_points_to_universal():
    from bigseq.checkpoint import inference
    saved = _cfg("--tensor-parallel-size", "2", "--zero-stage", "1")
    meta = {"cfg": train_config_to_dict(saved), "names": saved.names, "zero_stage": 1}
    with pytest.raises(BigseqError, match="--tensor-parallel-size 2 slices; run `bigseq convert universal"):
        inference.plain_state_dict("save", "checkpoint_4", meta, task=None)
