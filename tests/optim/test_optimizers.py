"""Built-in optimizers: exact torch classes, fairseq flag names, fused path, offload kwargs."""

import argparse

import pytest
import torch

from bigseq.config import add_dataclass_args, build_config
from bigseq.errors import BigseqError
from bigseq.optim.optimizers import (
    AdafactorConfig,
    AdamConfig,
    AdamWConfig,
    SGDConfig,
    build_optimizer,
    cpu_offload_kwargs,
)
from bigseq.registry import OPTIMIZER_REGISTRY

CONFIGS = {"adamw": AdamWConfig(), "adam": AdamConfig(), "sgd": SGDConfig(momentum=0.9), "adafactor": AdafactorConfig()}
TORCH_CLASSES = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD,
                 "adafactor": torch.optim.Adafactor}


def quadratic_params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(6, 5)), torch.nn.Parameter(torch.randn(5))]


def loss_of(params):
    return sum((p ** 2).sum() for p in params)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_builds_the_exact_torch_class_and_descends(name):
    params = quadratic_params()
    opt = build_optimizer(name, CONFIGS[name], (p for p in params), lr=1e-2)  # a generator is fine
    assert type(opt) is TORCH_CLASSES[name]  # ZeRO recognises exact classes only
    assert opt.param_groups[0]["lr"] == 1e-2
    start = loss_of(params).item()
    for _ in range(20):
        opt.zero_grad()
        loss_of(params).backward()
        opt.step()
    assert loss_of(params).item() < 0.9 * start


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_cpu_uses_fused_kernel_equal_to_reference_loop(name):
    ref_cls = TORCH_CLASSES[name]
    cfg = CONFIGS[name]
    params, ref_params = quadratic_params(), quadratic_params()
    opt = build_optimizer(name, cfg, params, lr=1e-2)
    assert opt.defaults["fused"] is True
    ref_kwargs = {"momentum": 0.9} if name == "sgd" else {"weight_decay": cfg.weight_decay}
    ref = ref_cls(ref_params, lr=1e-2, foreach=False, **ref_kwargs)
    for _ in range(10):
        for o, ps in ((opt, params), (ref, ref_params)):
            o.zero_grad()
            loss_of(ps).backward()
            o.step()
    for p, r in zip(params, ref_params):
        torch.testing.assert_close(p, r, rtol=1e-6, atol=1e-6)


def test_adamw_decays_weights_directly_adam_through_the_gradient():
    p_w, p_a = (torch.nn.Parameter(torch.full((3,), 2.0)) for _ in range(2))
    adamw = build_optimizer("adamw", AdamWConfig(weight_decay=0.1), [p_w], lr=0.5)
    adam = build_optimizer("adam", AdamConfig(weight_decay=0.1), [p_a], lr=0.5)
    for p, opt in ((p_w, adamw), (p_a, adam)):
        p.grad = torch.zeros_like(p)
        opt.step()
    torch.testing.assert_close(p_w.detach(), torch.full((3,), 2.0 * (1 - 0.5 * 0.1)))  # zero grad: pure decay
    torch.testing.assert_close(p_a.detach(), torch.full((3,), 2.0 - 0.5), atol=1e-6, rtol=0)  # Adam's normalised step


def test_fairseq_flag_names_reach_the_optimizer():
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, AdamWConfig, "optimizer")
    args = vars(parser.parse_args(["--adam-betas", "0.9", "0.98", "--adam-eps", "1e-6", "--weight-decay", "0.1"]))
    cfg = build_config(AdamWConfig, None, args)
    opt = build_optimizer("adamw", cfg, quadratic_params(), lr=3e-4)
    group = opt.param_groups[0]
    assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-6 and group["weight_decay"] == 0.1


def test_param_groups_keep_their_own_settings():
    a, b = quadratic_params()
    opt = build_optimizer("adamw", AdamWConfig(weight_decay=0.1),
                          [{"params": iter([a])}, {"params": [b], "weight_decay": 0.0}], lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["params"][0] is a


def test_bad_betas_and_nesterov_are_user_errors():
    with pytest.raises(BigseqError, match="--adam-betas"):
        build_optimizer("adamw", AdamWConfig(adam_betas=[0.9]), quadratic_params(), lr=1e-3)
    with pytest.raises(BigseqError, match="--momentum"):
        build_optimizer("sgd", SGDConfig(nesterov=True), quadratic_params(), lr=1e-3)


def test_adafactor_factors_matrix_second_moments():
    params = quadratic_params()
    opt = build_optimizer("adafactor", AdafactorConfig(), params, lr=1e-2)
    loss_of(params).backward()
    opt.step()
    matrix_state, vector_state = opt.state[params[0]], opt.state[params[1]]
    assert matrix_state["row_var"].numel() == 6 and matrix_state["col_var"].numel() == 5
    assert "variance" in vector_state


def test_cpu_offload_kwargs():
    cfg = AdamWConfig(adam_betas=[0.9, 0.95], adam_eps=1e-6, weight_decay=0.1)
    assert cpu_offload_kwargs(cfg) == {"betas": (0.9, 0.95), "eps": 1e-6, "weight_decay": 0.1, "adamw_mode": True}
    assert cpu_offload_kwargs(AdamConfig())["adamw_mode"] is False
    assert cpu_offload_kwargs(SGDConfig()) is None and cpu_offload_kwargs(AdafactorConfig()) is None
    assert OPTIMIZER_REGISTRY.get("adam").cls.cpu_offload_kwargs(AdamConfig())["weight_decay"] == 0.0
    assert cpu_offload_kwargs(AdamWConfig(), name="sgd") is None
