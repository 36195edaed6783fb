"""The pipeline numbers reported at start-up (bigseq/training/stages.py): 1F1B bubble, static memory."""

import pytest

from bigseq.optim.optimizers import AdafactorConfig, AdamConfig, AdamWConfig, SGDConfig
from bigseq.training.stages import bubble_fraction, optimizer_states_per_param, stage_memory_bytes


@pytest.mark.parametrize("stages,micro_batches,want", [(1, 8, 0.0), (2, 1, 0.5), (4, 8, 3 / 11), (4, 1, 0.75)])
def test_bubble_is_stages_minus_one_over_micro_batches_plus_that(stages, micro_batches, want):
    assert bubble_fraction(stages, micro_batches) == pytest.approx(want)


def test_more_micro_batches_shrink_the_bubble():
    fractions = [bubble_fraction(4, m) for m in (1, 2, 4, 8, 64)]
    assert fractions == sorted(fractions, reverse=True) and fractions[-1] < 0.05


@pytest.mark.parametrize("name,cfg,states", [("adamw", AdamWConfig(), 2), ("adam", AdamConfig(), 2),
                                             ("adafactor", AdafactorConfig(), 1), ("sgd", SGDConfig(), 0),
                                             ("sgd", SGDConfig(momentum=0.9), 1)])
def test_optimizer_states_per_parameter(name, cfg, states):
    assert optimizer_states_per_param(name, cfg) == states


def test_adam_needs_the_zero_papers_16_bytes_per_parameter_in_fp32_and_mixed_precision():
    # fp32: weight 4 + grad 4 + moments 8; bf16/fp16: weight 2 + grad 2 + moments 8 + fp32 master copy 4
    assert stage_memory_bytes(1000, "fp32", 2, zero_shards=1) == 16_000
    assert stage_memory_bytes(1000, "bf16", 2, zero_shards=1) == 16_000
    assert stage_memory_bytes(1000, "fp16", 2, zero_shards=1) == 16_000


def test_zero1_splits_only_the_optimizer_part_over_the_data_parallel_ranks():
    assert stage_memory_bytes(1000, "bf16", 2, zero_shards=4) == 1000 * (2 + 2 + 12 / 4)
    assert stage_memory_bytes(1000, "fp32", 0, zero_shards=4) == 8_000  # plain SGD: nothing to split
