"""--mlp-chunks K: the feed-forward block tiled over K slices of the tokens changes no loss or gradient."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from bigseq.criterions.cross_entropy import CrossEntropyConfig
from bigseq.data.batch import LMBatch
from bigseq.errors import BigseqError
from bigseq.models.transformer_lm import architectures as archs
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.model import TransformerLanguageModel
from bigseq.modules.feedforward import build_feedforward
from bigseq.registry import CRITERION_REGISTRY

VOCAB, PAD = 97, 1
TASK = SimpleNamespace(vocab_size=VOCAB, pad_idx=PAD)


def loss_and_grads(style: str, chunks: int, fused: bool, recompute: bool = False):
    cfg = dataclasses.replace(getattr(archs, f"{style}_tiny")(), dropout=0.0, mlp_chunks=chunks,
                              checkpoint_activations=recompute)
    model = TransformerLanguageModel.build(cfg, TASK, seed=4).train()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, VOCAB, (2, 11), generator=g)  # 22 tokens: no K below divides them
    targets = torch.randint(2, VOCAB, (2, 11), generator=g)
    targets[1, 8:] = PAD
    n = int((targets != PAD).sum())
    batch = LMBatch(ids=torch.arange(2), tokens=tokens, targets=targets, ntokens=n, nsentences=2, global_ntokens=n)
    criterion = CRITERION_REGISTRY.build("cross_entropy", CrossEntropyConfig(fused_linear_ce=fused, loss_impl="torch"),
                                         TASK)
    loss, _, _ = criterion(model, batch)
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("style,chunks,recompute", [
    ("llama", 3, False), ("gpt2", 3, False),  # gated SwiGLU, plain gelu MLP
    ("llama", 5, False), ("gpt2", 40, False),  # 40 > the 22 tokens: empty slices are skipped
    ("llama", 3, True),  # slices recomputed inside a recomputed layer (--checkpoint-activations)
])
def test_tiled_mlp_changes_no_loss_or_gradient(style, chunks, recompute):
    want_loss, want_grads = loss_and_grads(style, 1, fused=False)
    loss, grads = loss_and_grads(style, chunks, fused=True, recompute=recompute)  # --fused-linear-ce: tiled loss
    # seen bit for bit with AVX-512 kernels; 1 ulp apart (7.6e-6 at 88) with AVX2 ones, which block the sums
    # differently: 2 ulps of fp32 allowed
    torch.testing.assert_close(loss, want_loss, rtol=2.4e-7, atol=0)
    # weight gradients sum the slices in another order: fp32 rounding of each tensor's scale (gradients of
    # a token SUM, up to ~8; seen: 1.5e-6 at most)
    for name, g in want_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=0, atol=1e-6 * max(1.0, float(g.abs().max())), msg=name)


def test_without_autograd_the_slices_give_the_same_logits():
    tokens = torch.randint(2, VOCAB, (3, 7))
    logits = []
    for chunks in (1, 4):
        cfg = dataclasses.replace(archs.llama_tiny(), mlp_chunks=chunks)
        with torch.no_grad():
            logits.append(TransformerLanguageModel.build(cfg, TASK, seed=4).eval()(tokens))
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_backward_keeps_no_ffn_wide_activation(activation):
    # the point of tiling: autograd keeps the D-wide input, not the intermediates ffn_dim wide
    D, F, N = 8, 64, 30
    x = torch.randn(2, N // 2, D, requires_grad=True)
    saved = {}
    for chunks in (1, 4):
        ffn = build_feedforward(D, F, activation, bias=True, chunks=chunks)
        storages = {}

        def keep(t, storages=storages):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            out = ffn(x)
        out.sum().backward()
        saved[chunks] = sum(storages.values())
    ffn_wide = N * F * 4
    assert saved[1] >= 2 * ffn_wide and saved[4] < ffn_wide


def test_bad_chunk_count_is_one_line():
    with pytest.raises(BigseqError, match="--mlp-chunks must be >= 1"):
        TransformerLMConfig(mlp_chunks=0)
