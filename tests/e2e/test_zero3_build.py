"""ZeRO-3 builds the model sharded: no rank materializes the whole fp32 model.

Values still equal the unsharded model's (each rank writes its slice from (seed, name)):
test_parity_zero's stage-3 case checks the losses; this one checks what each rank holds.
"""

import re

import pytest

from .runner import MULTI_RANK, train, train_losses

pytestmark = [pytest.mark.slow, pytest.mark.launcher]


def test_two_ranks_each_hold_half_the_parameters(tiny_data, tmp_path):
    log = str(tmp_path / "log.jsonl")
    proc = train(tiny_data, ["--max-update", "3", "--no-save", "--zero-stage", "3"], nproc=2, launcher=MULTI_RANK,
                 log_file=log)
    found = re.search(r"ZeRO-3: built sharded, ([\d,]+) of ([\d,]+) parameter elements", proc.stdout)
    assert found, proc.stdout[-2000:]
    resident, total = (int(g.replace(",", "")) for g in found.groups())
    assert total > 100_000
    # half of every parameter, rounded up per parameter: at most one element of padding each
    assert total / 2 <= resident <= total / 2 + 200, (resident, total)
    losses = train_losses(log)
    assert sorted(losses) == [1, 2, 3] and losses[3] < losses[1]


def test_slices_that_cross_init_blocks_get_the_unsharded_values(tiny_data, tmp_path):
    # 64 x 1100 FFN matrices span two init blocks (65,536 elements each); rank 1's half starts
    # inside the first and ends in the second, so it draws parts of both
    wide = ["--max-update", "3", "--no-save", "--decoder-ffn-embed-dim", "1100"]
    logs = {stage: str(tmp_path / f"zero{stage}.jsonl") for stage in (0, 3)}
    train(tiny_data, wide, log_file=logs[0])
    train(tiny_data, wide + ["--zero-stage", "3"], nproc=2, launcher=MULTI_RANK, log_file=logs[3])
    unsharded, sharded = train_losses(logs[0]), train_losses(logs[3])
    assert sorted(sharded) == sorted(unsharded) == [1, 2, 3]
    for update in unsharded:  # the first loss is the initial weights' alone
        assert abs(sharded[update] - unsharded[update]) <= 2e-5, (update, sharded, unsharded)
