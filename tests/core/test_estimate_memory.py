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


def test_tensor_parallelism_splits_the_projections_and_their_activations(llama_70b):
    d, kv, ffn = 8192, 1024, 28672  # Llama-2-70B: 8 KV heads of 128
    assert llama_70b.tensor_parallel_params == 80 * (2 * d * d + 2 * d * kv + 3 * d * ffn)  # q,o + k,v + gate,up,down
    one, eight = (estimate(llama_70b, zero_stage=0, world_size=8, micro_batch=1, seq_len=4096, tensor_parallel=t)
                  for t in (1, 8))
    replicated = llama_70b.num_params - llama_70b.tensor_parallel_params  # embeddings, norms, output projection
    assert eight.parameters == 2 * (replicated + llama_70b.tensor_parallel_params // 8)
    assert eight.activations < one.activations / 2  # the residual stream and logits stay whole
    # ZeRO shards over the 8 / 8 = 1 data-parallel rank: nothing to shard
    assert estimate(llama_70b, zero_stage=3, world_size=8, micro_batch=1, seq_len=4096,
                    tensor_parallel=8).optimizer_states == 12 * (replicated + llama_70b.tensor_parallel_params // 8)
    with pytest.raises(BigseqError, match="--tensor-parallel-size 16 must divide the KV heads"):
        estimate(llama_70b, zero_stage=3, world_size=64, micro_batch=1, seq_len=4096, tensor_parallel=16)
    with pytest.raises(BigseqError, match="cannot be combined"):
        estimate(llama_70b, zero_stage=3, world_size=64, micro_batch=1, seq_len=4096, tensor_parallel=2,
                 sequence_parallel=2)


def test_mlp_chunks_drop_the_feed_forward_activations(llama_70b):
    run = dict(zero_stage=3, world_size=64, micro_batch=1, seq_len=16384)
    whole, tiled = estimate(llama_70b, **run), estimate(llama_70b, mlp_chunks=8, **run)
    ffn_layer = 3 * 28672 * 16384 * 2  # gate, up and their product, bf16
    assert whole.activations - tiled.activations == 80 * ffn_layer - ffn_layer // 8
    assert tiled.model_states == whole.model_states


@pytest.mark.parametrize("sp", [1, 4])
def test_longest_sequence_is_the_last_length_that_fits(llama_70b, sp):
    from bigseq.distributed.memory_estimate import longest_sequence
    run = dict(zero_stage=3, world_size=64, sequence_parallel=sp)
    cap = 80 * GIB
    for ckpt in (False, True):
        t = longest_sequence(llama_70b, cap, ckpt, **run)
        assert t % sp == 0
        assert estimate(llama_70b, seq_len=t, micro_batch=1, **run).total(ckpt) <= cap
        assert estimate(llama_70b, seq_len=t + sp, micro_batch=1, **run).total(ckpt) > cap
    assert longest_sequence(llama_70b, 1 * GIB, True, **run) == 0  # the states alone are larger


def test_cli_reports_the_longest_sequence_and_tensor_parallel_layout(capsys):
    assert bigseq_main.main(["estimate-memory", "--arch", "llama_70b", "--world-size", "64",
                             "--tensor-parallel-size", "8", "--mlp-chunks", "4"]) == 0
    out = capsys.readouterr().out
    assert "64 devices (8 tensor-parallel x 8 data-parallel)" in out and "MLP in 4 chunks" in out
    assert "longest sequence that fits 80GiB at ZeRO-3 (micro-batch 1): " in out
    assert bigseq_main.main(["estimate-memory", "--world-size", "6", "--tensor-parallel-size", "4"]) == 2
    assert capsys.readouterr().err.strip() == \
        "bigseq estimate-memory: error: --tensor-parallel-size 4 does not divide --world-size 6"
