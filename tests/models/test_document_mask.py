"""--document-mask: each packed document's loss and gradients equal those of the document run alone."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bigseq import kernels
from bigseq.criterions.cross_entropy import CrossEntropyConfig
from bigseq.data.lm_dataset import LMDataset
from bigseq.data.token_blocks import TokenBlocks
from bigseq.models.transformer_lm import architectures as archs
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.model import TransformerLanguageModel
from bigseq.registry import CRITERION_REGISTRY

VOCAB, PAD, EOS = 97, 1, 2
TASK = SimpleNamespace(vocab_size=VOCAB, pad_idx=PAD)
STYLES = {
    "llama": archs.llama_tiny(),  # RoPE, GQA
    "gpt2": archs.gpt2_tiny(),  # learned positions, tied
    "sinusoidal": TransformerLMConfig(decoder_layers=2, decoder_embed_dim=32, decoder_ffn_embed_dim=64,
                                      decoder_attention_heads=4),
}
# (break mode, tokens per sample): complete packs several documents per row and pads; none cuts
# documents across windows
MODES = {"complete": 24, "none": 16}


def build(style: str, **overrides) -> TransformerLanguageModel:
    cfg = dataclasses.replace(STYLES[style], dropout=0.0, **overrides)
    return TransformerLanguageModel.build(cfg, TASK, seed=3)


def packed_batch(mode: str, document_mask: bool = True):
    rng = np.random.default_rng(0)
    docs = [rng.integers(3, VOCAB, size=int(n)).tolist() + [EOS] for n in rng.integers(1, 9, size=12)]
    T = MODES[mode]
    blocks = TokenBlocks.build(np.array(sum(docs, [])), np.array([len(d) for d in docs]), tokens_per_sample=T,
                               break_mode=mode, eos=EOS)
    ds = LMDataset(blocks, PAD, document_mask=document_mask)
    return ds.collate([ds[i] for i in range(len(ds))], np.arange(len(ds)), width=T, global_ntokens=0)


def token_losses(model, tokens, targets, **net_input) -> torch.Tensor:
    logits = model(tokens, **net_input)
    loss, _ = kernels.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, reduction="none",
                                    impl="torch")
    return loss


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return out


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("style", sorted(STYLES))
def test_each_packed_document_equals_it_alone(style, mode):
    model = build(style)
    b = packed_batch(mode)
    assert (b.targets == PAD).any()  # a padded row is among them
    packed = token_losses(model, b.tokens, b.targets, **{k: v for k, v in b.net_input.items() if k != "src_tokens"})
    packed.sum().backward()
    packed_grads = grads(model)
    src, tgt, cu = b.tokens.flatten(), b.targets.flatten(), b.cu_seqlens.tolist()
    assert len(cu) - 1 > len(b.tokens)  # rows hold several documents
    for start, end in zip(cu[:-1], cu[1:]):
        n = int((tgt[start:end] != PAD).sum())  # its real tokens (padding trails a row's last document)
        alone = token_losses(model, src[None, start:start + n], tgt[None, start:start + n])
        alone.sum().backward()  # accumulates: the sum over documents
        assert abs(float(packed[start:end].sum()) - float(alone.sum())) <= 1e-5, (start, end)
    for name, g in grads(model).items():
        torch.testing.assert_close(packed_grads[name], g, rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_the_mask_matters_and_off_sends_the_model_nothing_new(style):
    model = build(style).eval()
    on, off = packed_batch("complete"), packed_batch("complete", document_mask=False)
    assert torch.equal(on.tokens, off.tokens) and off.net_input.keys() == {"src_tokens"}
    with torch.no_grad():
        masked = token_losses(model, on.tokens, on.targets, positions=on.positions, cu_seqlens=on.cu_seqlens)
        plain = token_losses(model, off.tokens, off.targets)
    assert float((masked - plain).abs().max()) > 1e-2  # later documents no longer see earlier ones


@pytest.mark.parametrize("fused", [False, True])
def test_criterion_and_recomputation_pass_the_layout_through(fused):
    b = packed_batch("complete")
    b.ntokens = b.global_ntokens = int((b.targets != PAD).sum())
    model = build("llama").eval()
    with torch.no_grad():
        want = token_losses(model, b.tokens, b.targets, positions=b.positions, cu_seqlens=b.cu_seqlens).sum()
    criterion = CRITERION_REGISTRY.build("cross_entropy", CrossEntropyConfig(fused_linear_ce=fused, loss_impl="torch"),
                                         TASK)
    recomputing = build("llama", checkpoint_activations=True).train()
    loss, _, _ = criterion(recomputing, b)
    torch.testing.assert_close(loss.detach(), want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_pipeline_layers_carry_the_layout_to_the_plain_forward(style):
    from bigseq.models.transformer_lm.pipeline import pipeline_layers
    from bigseq.modules.init import construct_without_default_init, init_params_by_name

    cfg = dataclasses.replace(STYLES[style], dropout=0.0, vocab_size=VOCAB)
    b = packed_batch("complete")
    x, tied = (b.tokens, b.positions, b.cu_seqlens), {}  # one module per tie key, as PipelineModule shares it
    with torch.no_grad():
        for layer in pipeline_layers(cfg):
            module = tied.get(layer.tie_key)
            if module is None:
                module = construct_without_default_init(layer.build)
                init_params_by_name(module, 3, layer.init_rules, prefix=layer.prefix)
                if layer.tie_key:
                    tied[layer.tie_key] = module
            x = layer.tied_forward(module, x) if layer.tied_forward else module(x)
        expected = build(style)(b.tokens, positions=b.positions, cu_seqlens=b.cu_seqlens)
    assert torch.equal(x, expected)
