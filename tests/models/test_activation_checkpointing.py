"""--activation-checkpointing: one switch for plain and pipeline models; recomputation changes no number."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

import bigseq.models  # noqa: F401  (registers the family)
from bigseq import registry
from bigseq.config.train_config import parse_train_config
from bigseq.errors import BigseqError
from bigseq.models.transformer_lm import architectures as archs

VOCAB = 97


def _grads_and_loss(interval: int | None) -> tuple[float, dict[str, torch.Tensor], int]:
    """(loss, gradients, tensors autograd kept for the backward outside recomputed segments)."""
    # 4 layers and dropout: segments of 1, 3 (uneven) and 4 layers must replay the same dropout masks
    cfg = dataclasses.replace(archs.gpt2_tiny(), decoder_layers=4, dropout=0.2,
                              checkpoint_activations=interval is not None, checkpoint_interval=interval or 1)
    model = registry.MODEL_REGISTRY.build("transformer_lm", cfg, SimpleNamespace(vocab_size=VOCAB, pad_idx=1))
    model.train()
    torch.manual_seed(0)
    tokens = torch.randint(0, VOCAB, (2, 9))
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        loss = model(tokens).log_softmax(-1).gather(-1, tokens[..., None]).mean().neg()
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}, len(kept)


@pytest.mark.parametrize("interval", [1, 3, 4])
def test_recomputed_segments_give_exactly_the_same_loss_and_gradients(interval):
    want_loss, want, kept_plain = _grads_and_loss(None)
    got_loss, got, kept_recompute = _grads_and_loss(interval)
    assert kept_recompute < kept_plain / 2  # the layers' activations really are dropped and recomputed
    assert got_loss == want_loss
    for name, g in want.items():
        assert torch.equal(got[name], g), name


def _cfg(tmp_path, *flags):
    return parse_train_config([str(tmp_path), "--batch-size", "2", "--arch", "llama_tiny", *flags])


def test_one_flag_switches_both_paths(tmp_path):
    cfg = _cfg(tmp_path, "--activation-checkpointing", "--checkpoint-interval", "2")
    assert cfg.model.checkpoint_activations and cfg.model.checkpoint_interval == 2
    assert cfg.distributed.checkpoint_interval == 2
    # the model's fairseq-style flag turns on the pipeline's recomputation too
    cfg = _cfg(tmp_path, "--checkpoint-activations")
    assert cfg.distributed.activation_checkpointing
    from bigseq.distributed.pipeline import checkpoint_interval
    assert checkpoint_interval(cfg.distributed) == 1
    assert checkpoint_interval(_cfg(tmp_path).distributed) == 0


def test_bad_interval_is_one_clear_error(tmp_path):
    with pytest.raises(BigseqError, match="--checkpoint-interval must be >= 1"):
        _cfg(tmp_path, "--activation-checkpointing", "--checkpoint-interval", "0")
