"""`bigseq convert from-hf` and `to-hf` stream: on a ~250 MiB bf16 Llama each holds about one output shard
and one tensor above its imports, never the model (the whole-model path needed about 3x the checkpoint)."""

import os

import pytest
import torch

from bigseq.checkpoint.hf_read import TensorReader

from .convert_memory import MIB, measure, write_synthetic_llama
from .runner import ROOT

pytestmark = pytest.mark.slow
SHARD_MIB = 64


def test_from_hf_and_to_hf_hold_one_shard_and_one_tensor(tmp_path):
    hf, ours, back = (str(tmp_path / n) for n in ("hf", "ours", "back"))
    sizes = write_synthetic_llama(hf, layers=5, shard_mib=100)  # 247 MiB in 3 shards; the embedding is 62.5 MiB
    budget = SHARD_MIB * MIB + sizes["largest_bytes"] + 64 * MIB
    for direction, src, out in (("from-hf", hf, ours), ("to-hf", ours, back)):
        row = measure(direction, src, out, code_root=ROOT, max_shard_size=f"{SHARD_MIB}MiB")
        assert row["above_baseline"] <= budget, (f"{direction}: {row['above_baseline'] / MIB:.0f} MiB above the "
                                                 f"imports, budget {budget / MIB:.0f} MiB")
    assert len([f for f in os.listdir(back) if f.endswith(".safetensors")]) > 1  # 64 MiB shards of 247 MiB
    with TensorReader(hf) as a, TensorReader(back) as b:
        assert sorted(a.names()) == sorted(b.names())
        for name in a.names():
            assert torch.equal(a.get(name), b.get(name)) and b.get(name).dtype == torch.bfloat16, name
