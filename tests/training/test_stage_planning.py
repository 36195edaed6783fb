"""distributed.pipeline.plan_stages: the stage boundaries DeepSpeed will use, and one clear line when a
--pipeline-parallel-size / --pipeline-partition-method cannot give every stage layers."""

import pytest
import torch.nn as nn

from bigseq.distributed import pipeline
from bigseq.errors import BigseqError
from bigseq.models.pipeline_layers import PipelineLayer


class Embed(nn.Embedding):
    def __init__(self):
        super().__init__(100, 8)  # 800 parameters


class Block(nn.Linear):
    def __init__(self):
        super().__init__(8, 8)  # 72 parameters


class Head(nn.Linear):
    def __init__(self):
        super().__init__(8, 100, bias=False)  # 800 parameters


class Scale(nn.Module):  # no parameters
    def forward(self, x):
        return 2 * x


def _layers(*classes) -> list[PipelineLayer]:
    return [PipelineLayer(cls=c, build=c, prefix=f"layers.{i}.", init_rules=()) for i, c in enumerate(classes)]


MODEL = _layers(Embed, Block, Block, Block, Block, Head)


def _plan(stages, method, layers=MODEL):
    return [int(b) for b in pipeline.plan_stages(layers, stages, method, "tiny_test")]


def test_uniform_splits_the_layer_count():
    assert _plan(2, "uniform") == [0, 3, 6]
    assert _plan(6, "uniform") == [0, 1, 2, 3, 4, 5, 6]


def test_parameters_balances_parameter_counts():
    # the two 800-parameter ends each fill a stage; the four small blocks share the middle one
    assert _plan(3, "parameters") == [0, 1, 5, 6]


@pytest.mark.parametrize("method", ["type:Block", "type:block"])  # matched case-insensitively
def test_type_balances_the_matching_layers(method):
    assert _plan(2, method) == [0, 3, 6]  # two blocks per stage; Embed and Head ride along
    assert _plan(4, method) == [0, 2, 3, 4, 6]


@pytest.mark.parametrize("stages,method,needle", [
    (7, "uniform", "more than the 6 pipeline layers"),
    (5, "type:Block", "more than the 4 pipeline layers"),
])
def test_more_stages_than_layers_is_one_clear_line(stages, method, needle):
    with pytest.raises(BigseqError, match=needle) as err:
        _plan(stages, method)
    assert "use at most" in str(err.value) and "--arch tiny_test" in str(err.value)


def test_parameters_counts_only_layers_that_have_parameters():
    with pytest.raises(BigseqError, match="more than the 2 pipeline layers with parameters"):
        _plan(3, "parameters", _layers(Embed, Scale, Head))


def test_a_type_that_matches_nothing_lists_the_layer_classes():
    with pytest.raises(BigseqError, match="no layer class of --arch tiny_test matches 'Attention'; "
                                          "its layer classes are Embed, Block, Head"):
        _plan(2, "type:Attention")


def test_a_partition_that_leaves_a_stage_empty_is_refused(monkeypatch):
    # DeepSpeed's balancer never does this today; the check guards a stage that would build nothing
    monkeypatch.setattr(pipeline.ds_utils, "partition_balanced", lambda weights, num_parts: [0, 2, 2, 6])
    with pytest.raises(BigseqError, match="leaves pipeline stage 1 of 3 without layers"):
        _plan(3, "type:Block")
