"""bigseq's CPU Dropout: torch's distribution and scaling, reproducible from torch's seed."""

import torch

from bigseq.modules import Dropout


def test_keeps_one_minus_p_scaled_and_backpropagates_through_the_same_mask():
    drop = Dropout(0.1).train()
    x = torch.full((1000, 1000), 2.0, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 2e-3  # binomial std over 10^6 draws is 3e-4
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 2.0 / 0.9))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.9)
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the mask comes from torch's default generator


def test_bf16_matches_torch_rounding_of_the_scale_and_eval_is_identity():
    drop = Dropout(0.3).train()
    x = torch.ones(4096, dtype=torch.bfloat16)
    y = drop(x)
    assert y.dtype == torch.bfloat16
    assert set(y.unique().tolist()) == {0.0, torch.tensor(1 / 0.7, dtype=torch.bfloat16).item()}
    assert drop.eval()(x) is x
