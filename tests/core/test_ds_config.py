"""The DeepSpeed config bigseq builds: "auto" and missing values come from the flags, numbers win."""

import glob
import json
import os

import pytest

from bigseq.config import train_config as options
from bigseq.distributed.engine import build_ds_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config(*flags, dp_size=2):
    cfg = options.parse_train_config(["data-bin", "--arch", "llama_tiny", "--batch-size", "8", *flags])
    return build_ds_config(cfg, dp_size)


def test_zero3_buckets_scale_with_the_hidden_size():
    zero = config("--zero-stage", "3", "--decoder-embed-dim", "2048", "--decoder-attention-heads", "16",
                  "--decoder-kv-heads", "16")["zero_optimization"]
    assert zero["reduce_bucket_size"] == 2048**2
    assert zero["stage3_prefetch_bucket_size"] == int(0.9 * 2048**2)
    assert zero["stage3_param_persistence_threshold"] == 10 * 2048


def test_zero3_buckets_have_a_floor_for_tiny_models():
    zero = config("--zero-stage", "3")["zero_optimization"]  # llama_tiny: d = 64
    assert zero["reduce_bucket_size"] == 2**20
    assert zero["stage3_param_persistence_threshold"] == 640


def test_other_stages_keep_deepspeeds_defaults():
    assert config("--zero-stage", "2")["zero_optimization"] == {"stage": 2}


def test_numbers_in_a_template_win(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3, "reduce_bucket_size": 12345}}))
    zero = config("--deepspeed-config", str(path))["zero_optimization"]
    assert zero["reduce_bucket_size"] == 12345
    assert zero["stage3_prefetch_bucket_size"] == int(0.9 * 2**20)


@pytest.mark.parametrize("template", sorted(glob.glob(os.path.join(ROOT, "ds_configs", "*.json"))),
                         ids=os.path.basename)
def test_every_shipped_template_is_filled_completely(template):
    built = config("--deepspeed-config", template)

    def autos(node):
        if isinstance(node, dict):
            return [k for k, v in node.items() if v == "auto"] + [a for v in node.values() for a in autos(v)]
        return []
    assert autos(built) == []
    assert built["train_batch_size"] == 8


def test_the_memory_lean_template_frees_gathered_layers_after_use():
    zero = config("--deepspeed-config", os.path.join(ROOT, "ds_configs", "zero3_offload.json"))["zero_optimization"]
    layer = 4 * 64 * 64 + 3 * 64 * 176  # llama_tiny: attention + SwiGLU weights of one layer
    assert zero["stage3_max_live_parameters"] == zero["stage3_max_reuse_distance"] == 2 * layer
    assert "stage3_max_live_parameters" not in config("--zero-stage", "3")["zero_optimization"]  # DeepSpeed's own
