"""Which ZeRO stage may resume which checkpoint, and what the refusal tells the user."""

import itertools

import pytest

from bigseq.checkpoint.compat import check_zero_stage
from bigseq.checkpoint.universal_stages import NEUTRAL_KEY
from bigseq.errors import BigseqError

FAMILY = {0: 0, 1: 1, 2: 1, 3: 3}  # DeepSpeed loads stage-1 and stage-2 checkpoints into each other
SOURCE = "/runs/save/checkpoint_6"
KINDS = ["plain", "universal", "old"]
CASES = [(saved, stage, kind) for saved, stage, kind in itertools.product(range(4), range(4), KINDS)
         if kind == "plain" or saved > 0]  # stage-0 checkpoints are not converted to universal


def _loads(saved: int, stage: int, kind: str) -> bool:
    if kind == "plain":
        return FAMILY[saved] == FAMILY[stage]
    if kind == "universal":  # written for every stage by `bigseq convert universal`
        return stage > 0
    return stage > 0 and FAMILY[saved] == FAMILY[stage]  # converted before that layout existed


@pytest.mark.parametrize("saved,stage,kind", CASES)
def test_stage_matrix(saved, stage, kind):
    where = SOURCE if kind == "plain" else SOURCE + "_universal"
    meta = {"zero_stage": saved, "universal": kind != "plain", "source_tag": "checkpoint_6"}
    if kind == "universal":
        meta[NEUTRAL_KEY] = True
    if _loads(saved, stage, kind):
        check_zero_stage(meta, stage, where)
        return
    with pytest.raises(BigseqError) as err:
        check_zero_stage(meta, stage, where)
    message = str(err.value)
    assert "\n" not in message and "--zero-stage" in message, message
    if kind == "plain" and saved > 0 and stage > 0:
        assert f"bigseq convert universal {SOURCE}" in message
    if kind == "plain" and saved == 0:
        assert f"--finetune-from-model {SOURCE}" in message
    if kind == "old" and stage > 0:  # convert the source again
        assert f"rm -r {where} && bigseq convert universal {SOURCE}" in message
