"""Building a model skips PyTorch's default init (its parameters are all filled by name afterwards)."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

import bigseq.models  # noqa: F401
from bigseq.models.transformer_lm.architectures import gpt2_tiny, llama_tiny
from bigseq.models.transformer_lm.model import TransformerLanguageModel
from bigseq.modules import init
from bigseq.registry import register_model
from bigseq.tasks.base import Task

TASK = SimpleNamespace(vocab_size=50, pad_idx=1)


@pytest.mark.parametrize("arch", [llama_tiny, gpt2_tiny])
def test_build_gives_the_weights_of_a_default_init_build(arch):
    cfg = dataclasses.replace(arch(), vocab_size=50)
    reference = TransformerLanguageModel(cfg, pad_idx=1)  # default init first, then filled by name
    reference.reset_parameters(5)
    built = TransformerLanguageModel.build(cfg, TASK, seed=5)
    assert all(p.device.type == "cpu" for p in built.parameters())
    want = reference.state_dict()
    for name, tensor in built.state_dict().items():
        assert torch.equal(tensor, want[name]), name


class _Vocabulary50(Task):
    vocab_size, pad_idx = 50, 1


def test_task_passes_the_seed_to_the_build(monkeypatch):
    task = _Vocabulary50(cfg=None)
    cfg = dataclasses.replace(llama_tiny(), vocab_size=None)
    calls = []
    original = TransformerLanguageModel.reset_parameters
    monkeypatch.setattr(TransformerLanguageModel, "reset_parameters",
                        lambda self, seed: calls.append(seed) or original(self, seed))
    task.build_model("transformer_lm", cfg, seed=9)
    assert calls == [9]  # one fill, from the run's seed


@dataclasses.dataclass(kw_only=True)
class _SeedlessConfig:
    dim: int = 4
    """Width."""


@register_model("test_seedless_build", _SeedlessConfig)
class _SeedlessBuild(nn.Module):
    """A --user-dir model whose build takes no seed, as BaseModel's contract allows."""

    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.seeds = []

    @classmethod
    def build(cls, cfg, task):
        return cls(cfg)

    def reset_parameters(self, seed):
        self.seeds.append(seed)


def test_task_reseeds_a_model_whose_build_takes_no_seed():
    model = _Vocabulary50(cfg=None).build_model("test_seedless_build", _SeedlessConfig(), seed=9)
    assert model.seeds == [9]


def test_on_the_meta_device_nothing_is_materialized():
    cfg = dataclasses.replace(llama_tiny(), vocab_size=50)
    with torch.device("meta"):
        model = TransformerLanguageModel.build(cfg, TASK)
    assert all(p.is_meta for p in model.parameters())


def test_a_module_with_buffers_keeps_them():
    class WithBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(3))
            self.register_buffer("table", torch.arange(4.0))

    module = init.construct_without_default_init(WithBuffer)
    assert torch.equal(module.table, torch.arange(4.0))


def test_init_values_ignore_a_patched_torch_empty(monkeypatch):
    """deepspeed.zero.Init swaps torch.empty & co. for accelerator / training-dtype versions while it builds."""
    def patched(*args, **kwargs):
        raise AssertionError("init used the patched constructor")
    for name in ("empty", "zeros", "ones"):
        monkeypatch.setattr(torch, name, patched)
    rules = [("*", init.normal(0.02)), ("*.bias", init.zeros())]
    value = init.init_value("layer.weight", (4, 4), seed=1, rules=rules)
    assert value.dtype == torch.float32 and value.device.type == "cpu"


def test_default_init_is_skipped_and_restored_after():
    kaiming = nn.init.kaiming_uniform_

    def factory():
        layer = nn.Linear(4, 4)
        layer.weight.data.fill_(7.0)  # what torch.empty left, made visible: the default init must not touch it
        layer.reset_parameters()
        return layer

    layer = init.construct_without_default_init(factory)
    assert torch.all(layer.weight == 7.0)
    assert nn.init.kaiming_uniform_ is kaiming

    def failing():
        raise RuntimeError("bad config")

    with pytest.raises(RuntimeError):
        init.construct_without_default_init(failing)
    assert nn.init.kaiming_uniform_ is kaiming and nn.init.normal_(torch.zeros(1000)).std() > 0
