"""A parameter is drawn block by block, so any slice of it can be drawn alone (ZeRO-3 ranks do)."""

import pytest
import torch

from bigseq.modules import init
from bigseq.modules.init import INIT_BLOCK, init_slice, init_value

RULES = [("*.bias", init.zeros()), ("*", init.normal(0.02))]
NUMEL = 2 * INIT_BLOCK + INIT_BLOCK // 2  # two whole blocks and half of a third


@pytest.mark.parametrize("start,count", [
    (0, NUMEL),  # everything
    (100, 50),  # inside the first block
    (INIT_BLOCK - 10, 20),  # across the first boundary
    (INIT_BLOCK, INIT_BLOCK),  # exactly the second block
    (INIT_BLOCK // 2, 2 * INIT_BLOCK),  # from the middle of the first block to the end
    (NUMEL - 1, 1),  # the last element
    (5, 0),  # nothing
])
def test_a_slice_equals_that_part_of_the_whole_value(start, count):
    whole = init_value("layer.weight", (NUMEL // 2, 2), seed=3, rules=RULES).reshape(-1)
    part = init_slice("layer.weight", NUMEL, start, count, seed=3, rules=RULES)
    assert torch.equal(part, whole[start:start + count])


def test_a_slice_draws_only_the_blocks_it_lies_in():
    drawn = []

    def counting(numel, gen):
        drawn.append(numel)
        return init.normal(1.0)(numel, gen)

    init_slice("w", NUMEL, INIT_BLOCK + 7, INIT_BLOCK, seed=1, rules=[("*", counting)])
    assert drawn == [INIT_BLOCK, INIT_BLOCK // 2]  # the second block and the (short) third one
    drawn.clear()
    init_slice("w", NUMEL, 0, NUMEL, seed=1, rules=[("*", counting)])
    assert drawn == [INIT_BLOCK, INIT_BLOCK, INIT_BLOCK // 2]


def test_blocks_differ_and_a_one_block_parameter_is_one_draw_from_its_own_seed():
    value = init_value("w", (2 * INIT_BLOCK,), seed=1, rules=RULES)
    assert not torch.equal(value[:INIT_BLOCK], value[INIT_BLOCK:])
    gen = torch.Generator().manual_seed(init.stable_seed(1, "w"))
    assert torch.equal(value[:INIT_BLOCK], torch.empty(INIT_BLOCK).normal_(0.0, 0.02, generator=gen))
    small = init_value("small.weight", (10, 7), seed=1, rules=RULES)
    gen = torch.Generator().manual_seed(init.stable_seed(1, "small.weight"))
    assert torch.equal(small, torch.empty(10, 7).normal_(0.0, 0.02, generator=gen))


def test_unmatched_name_is_an_error():
    with pytest.raises(ValueError, match="no init rule matches parameter 'x'"):
        init_slice("x", 4, 0, 4, seed=1, rules=[("*.bias", init.zeros())])


@pytest.mark.parametrize("start,count", [(-1, 2), (NUMEL - 1, 2), (0, -1)])
def test_a_slice_outside_the_parameter_is_an_error(start, count):
    with pytest.raises(ValueError, match="is outside parameter 'w' of"):
        init_slice("w", NUMEL, start, count, seed=1, rules=RULES)
