"""Ulysses attention on 2 gloo ranks (torch.multiprocessing) equals one-process attention exactly: fp64,
outputs and the gradients of the layer's input and weights, for MHA and GQA, causal rows and packed
documents (cu_seqlens), through SelfAttention's core_attention seam and LMBatch.sequence_slice's positions."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from bigseq.data.batch import LMBatch
from bigseq.modules.attention import SelfAttention
from bigseq.modules.rotary import RopeConfig

P = 2
CASES = [  # (heads, kv_heads, documents)
    (4, 4, False),
    (4, 2, True),
]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _layer(heads: int, kv_heads: int) -> SelfAttention:
    torch.manual_seed(0)
    layer = SelfAttention(32, heads, num_kv_heads=kv_heads, rope=RopeConfig(theta=10000.0), bias=False)
    return layer.double()


def _inputs(documents: bool):
    """x (B, T, D), positions (B, T) restarting at each document, cu_seqlens over the flattened rows."""
    torch.manual_seed(1)
    B, T = 2, 12
    x = torch.randn(B, T, 32, dtype=torch.float64)
    if not documents:
        return x, torch.arange(T).expand(B, T), None
    starts = [0, 5, 12, 19]  # row 0: 0-4, 5-11; row 1: 12-18, 19-23 (flattened)
    cu = torch.tensor(starts + [B * T], dtype=torch.int32)
    pos = torch.cat([torch.arange(e - s) for s, e in zip(starts, starts[1:] + [B * T])]).view(B, T)
    return x, pos, cu


def _reference(layer, x, positions, cu_seqlens):
    x = x.clone().requires_grad_(True)
    out = layer(x, positions=positions, cu_seqlens=cu_seqlens)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    return out.detach(), x.grad, grads


def _rank(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(P),
                      LOCAL_RANK=str(rank))
    import deepspeed

    from bigseq.distributed import sequence_parallel
    from bigseq.distributed.launch_env import release_shared_memory_at_exit
    release_shared_memory_at_exit()  # DeepSpeed's CPU communicator leaves a 66 MiB /dev/shm buffer per rank
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    sp, _ = sequence_parallel.init_groups(P, rank, P)
    out = {}
    for heads, kv_heads, documents in CASES:
        layer = _layer(heads, kv_heads)
        x, positions, cu_seqlens = _inputs(documents)
        want_out, want_dx, want_grads = _reference(layer, x, positions, cu_seqlens)
        # this rank's slice, positions and cu_seqlens as the trainer hands them to the model
        batch = LMBatch(ids=torch.arange(2), tokens=torch.zeros(x.shape[:2], dtype=torch.long),
                        targets=torch.zeros(x.shape[:2], dtype=torch.long), ntokens=0, nsentences=2,
                        global_ntokens=0, positions=None if cu_seqlens is None else positions, cu_seqlens=cu_seqlens)
        local = batch.sequence_slice(sp.rank, P, pad_idx=1)
        cols = slice(sp.rank * x.shape[1] // P, (sp.rank + 1) * x.shape[1] // P)
        sequence_parallel.shard_attention(layer, sp)
        x_local = x[:, cols].clone().requires_grad_(True)
        got = layer(x_local, positions=local.positions, cu_seqlens=local.cu_seqlens)
        weights = torch.linspace(-1, 1, want_out.numel(), dtype=got.dtype).view(want_out.shape)[:, cols]
        (got * weights).sum().backward()
        # the weights' gradients are sums over the sequence: each rank holds its slice's part
        for p in layer.parameters():
            torch.distributed.all_reduce(p.grad)
        got = got.detach()
        exact = [(got - want_out[:, cols]).abs().max(), (x_local.grad - want_dx[:, cols]).abs().max()]
        summed = [(p.grad - want_grads[n]).abs().max() for n, p in layer.named_parameters()]
        out[(heads, kv_heads, documents)] = (float(max(exact)), float(max(summed)))
    results[rank] = out
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def test_ulysses_attention_equals_one_process():
    results = mp.Manager().dict()
    mp.start_processes(_rank, args=(_free_port(), results), nprocs=P, join=True, start_method="spawn")
    for rank in range(P):
        for case, (exact, summed) in results[rank].items():
            # outputs and input gradients are the same arithmetic; weight gradients sum the tokens in
            # another order (two slices, then the all-reduce): fp64 rounding, not a 2x or a lost slice
            assert exact == 0.0, f"rank {rank}, (heads, kv heads, documents) = {case}: max abs diff {exact}"
            assert summed < 1e-12, f"rank {rank}, (heads, kv heads, documents) = {case}: weight grads {summed}"
