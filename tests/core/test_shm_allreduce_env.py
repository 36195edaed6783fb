"""When the shared-memory gradient all-reduce applies: every rank local (LOCAL_SIZE = WORLD_SIZE, torchrun's
LOCAL_WORLD_SIZE copied over), more than one rank, no CUDA, not switched off."""

import pytest

from bigseq.distributed import shm_allreduce
from bigseq.errors import BigseqError


def test_torchrun_local_world_size_becomes_local_size_unless_set():
    env = {"LOCAL_WORLD_SIZE": "2"}
    shm_allreduce.set_local_size(env)
    assert env["LOCAL_SIZE"] == "2"
    env = {"LOCAL_WORLD_SIZE": "2", "LOCAL_SIZE": "4"}
    shm_allreduce.set_local_size(env)
    assert env["LOCAL_SIZE"] == "4"


def test_enabled_only_with_every_rank_local_and_not_switched_off():
    assert shm_allreduce.enabled({"WORLD_SIZE": "2", "LOCAL_SIZE": "2"})
    assert not shm_allreduce.enabled({"WORLD_SIZE": "4", "LOCAL_SIZE": "2"})  # two machines
    assert not shm_allreduce.enabled({"WORLD_SIZE": "1", "LOCAL_SIZE": "1"})
    assert not shm_allreduce.enabled({"WORLD_SIZE": "2"})
    assert not shm_allreduce.enabled({"WORLD_SIZE": "2", "LOCAL_SIZE": "2", "BIGSEQ_SHM_ALLREDUCE": "0"})


def test_a_bad_switch_value_is_one_line_naming_the_choices():
    with pytest.raises(BigseqError, match=r"BIGSEQ_SHM_ALLREDUCE='yes': use 1 .* or 0 \(gloo\)"):
        shm_allreduce.enabled({"WORLD_SIZE": "2", "LOCAL_SIZE": "2", "BIGSEQ_SHM_ALLREDUCE": "yes"})
