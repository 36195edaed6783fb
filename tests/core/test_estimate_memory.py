"""estimate-memory: model states agree with DeepSpeed's own estimators; the CLI prints the table."""

import pytest
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

from bigseq.cli import main as bigseq_main
from bigseq.distributed.memory_estimate import GIB, estimate, model_shape
from bigseq.errors import BigseqError


@pytest.fixture(scope="module")
def llama_70b():
    return model_shape("llama_70b", 32000)


def test_parameter_count_comes_from_the_real_architecture(llama_70b):
    assert llama_70b.num_params == 68_976_648_192  # the count tests/models checks against Llama-2-70B
    assert llama_70b.largest_layer_params == 32000 * 8192  # embedding / output projection


@pytest.mark.parametrize("world_size", [8, 64])
@pytest.mark.parametrize("offload", [False, True])
def test_zero2_model_states_match_deepspeed(llama_70b, world_size, offload):
    _, ds_device = estimate_zero2_model_states_mem_needs(llama_70b.num_params, num_gpus_per_node=8,
                                                          num_nodes=world_size // 8, cpu_offload=offload)
    ours = estimate(llama_70b, zero_stage=2, world_size=world_size, micro_batch=1, seq_len=4096,
                    offload_optimizer=offload)
    assert abs(ours.model_states - ds_device) <= 4  # DeepSpeed rounds once, we round per term


@pytest.mark.parametrize("world_size", [8, 64])
@pytest.mark.parametrize("offload", [False, True])
def test_zero3_model_states_match_deepspeed(llama_70b, world_size, offload):
    _, ds_device, largest = estimate_zero3_model_states_mem_needs(
        llama_70b.num_params, llama_70b.largest_layer_params, num_gpus_per_node=8, num_nodes=world_size // 8,
        cpu_offload=offload, cpu_offload_params=False)
    ours = estimate(llama_70b, zero_stage=3, world_size=world_size, micro_batch=1, seq_len=4096,
                    offload_optimizer=offload)
    assert abs(ours.model_states - ds_device) <= 4
    assert ours.parameters >= largest  # the gathered layer is counted with the weights


def test_stages_shrink_memory_and_checkpointing_shrinks_activations(llama_70b):
    rows = [estimate(llama_70b, zero_stage=k, world_size=64, micro_batch=1, seq_len=4096) for k in range(4)]
    totals = [r.total(False) for r in rows]
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == 4
    assert rows[3].activations_checkpointed < rows[3].activations / 5
    assert rows[1].optimizer_states == 12 * llama_70b.num_params // 64  # fp32 master + 2 Adam moments, sharded


def test_cli_prints_the_table_and_which_stages_fit(capsys):
    assert bigseq_main.main(["estimate-memory", "--arch", "llama_70b", "--zero-stage", "3", "--world-size", "64",
                             "--micro-batch", "1", "--tokens-per-sample", "4096", "--device-memory", "80GiB"]) == 0
    out = capsys.readouterr().out
    assert "68,976,648,192 parameters" in out
    table = [line for line in out.splitlines() if line.startswith("| ") and "ZeRO" not in line]
    rows = {line.split("|")[1].strip(): line for line in table}
    assert set(rows) == {"0", "1", "2", "3 (chosen)"}
    want = estimate(model_shape("llama_70b", 32000), zero_stage=3, world_size=64, micro_batch=1, seq_len=4096)
    assert f"| {want.optimizer_states / GIB:,.1f} |" in rows["3 (chosen)"]
    assert rows["0"].rstrip().endswith("| no |")
    assert "fits in 80GiB: ZeRO-3" in out


def test_cli_bad_input_is_one_line(capsys):
    assert bigseq_main.main(["estimate-memory", "--device-memory", "lots"]) == 2
    stderr = capsys.readouterr().err
    assert "--device-memory 'lots' is not a size" in stderr and "Traceback" not in stderr
    with pytest.raises(BigseqError, match="unknown architecture"):
        model_shape("llama_700b", 32000)


def test_sequence_parallelism_divides_activations_only(llama_70b, capsys):
    one, four = (estimate(llama_70b, zero_stage=3, world_size=64, micro_batch=1, seq_len=32768, sequence_parallel=p)
                 for p in (1, 4))
    assert four.model_states == one.model_states  # ZeRO shards over all 64 devices either way
    assert four.activations == estimate(llama_70b, zero_stage=3, world_size=64, micro_batch=1, seq_len=8192).activations
    assert bigseq_main.main(["estimate-memory", "--arch", "llama_70b", "--world-size", "64", "--tokens-per-sample",
                             "32768", "--sequence-parallel-size", "4"]) == 0
    assert "64 devices (4 sequence-parallel x 16 data-parallel)" in capsys.readouterr().out
    with pytest.raises(BigseqError, match="key/value heads 8 is not divisible by --sequence-parallel-size 16"):
        estimate(llama_70b, zero_stage=3, world_size=64, micro_batch=1, seq_len=32768, sequence_parallel=16)
