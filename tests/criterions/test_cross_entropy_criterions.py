"""cross_entropy and label_smoothed_cross_entropy against hand-computed losses."""

import math

import pytest
import torch
import torch.nn as nn

from bigseq.criterions.cross_entropy import CrossEntropyConfig
from bigseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyConfig
from bigseq.data.batch import LMBatch
from bigseq.errors import BigseqError
from bigseq.registry import CRITERION_REGISTRY

PAD, V, D = 1, 11, 8


class TinyTask:
    """What a criterion reads from its task: the padding id."""

    pad_idx = PAD


class TinyLM(nn.Module):
    """Embedding -> tanh -> output projection, with the hidden/weight API of the model family."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(V, D)
        self.out = nn.Linear(D, V, bias=False)

    def forward_hidden(self, src_tokens):
        return torch.tanh(self.embed(src_tokens))

    @property
    def output_weight(self):
        return self.out.weight

    def forward(self, src_tokens):
        return self.out(self.forward_hidden(src_tokens))


def make_sample():
    target = torch.tensor([[4, 5, 6, 2], [7, 3, PAD, PAD]])
    src = torch.tensor([[2, 4, 5, 6], [2, 7, 3, PAD]])
    ntokens = int((target != PAD).sum())
    return LMBatch(ids=torch.arange(2), tokens=src, targets=target, ntokens=ntokens, nsentences=2,
                   global_ntokens=ntokens)


def build(name, cfg):
    return CRITERION_REGISTRY.build(name, cfg, TinyTask())


def hand_loss(model, sample, eps):
    """fairseq's smoothed target written out: 1 - eps on the target, eps / (V - 1) on each other class."""
    lprobs = torch.log_softmax(model(**sample.net_input).double(), -1)
    loss = nll = 0.0
    for b, row in enumerate(sample.targets.tolist()):
        for t, tgt in enumerate(row):
            if tgt == PAD:
                continue
            for c in range(V):
                q = 1 - eps if c == tgt else eps / (V - 1)
                loss -= q * lprobs[b, t, c].item()
            nll -= lprobs[b, t, tgt].item()
    return loss, nll


def test_cross_entropy_is_the_sum_of_token_nlls_without_pads():
    model, sample = TinyLM(), make_sample()
    crit = build("cross_entropy", CrossEntropyConfig(loss_impl="torch"))
    loss, sample_size, log = crit(model, sample)
    want, want_nll = hand_loss(model, sample, eps=0.0)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert log["nll_loss"] == pytest.approx(want_nll, rel=1e-5)
    assert sample_size == 6 and log == {**log, "ntokens": 6, "nsentences": 2, "sample_size": 6}
    assert isinstance(log["loss"], float)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_matches_fairseq_formula(eps):
    model, sample = TinyLM(), make_sample()
    crit = build("label_smoothed_cross_entropy",
                 LabelSmoothedCrossEntropyConfig(label_smoothing=eps, loss_impl="torch"))
    loss, _, log = crit(model, sample)
    want, want_nll = hand_loss(model, sample, eps)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert log["loss"] == pytest.approx(want, rel=1e-5)
    assert log["nll_loss"] == pytest.approx(want_nll, rel=1e-5)  # unsmoothed, for ppl
    assert abs(log["loss"] - log["nll_loss"]) > 1e-3  # smoothing changed the loss, not the nll


def test_pad_positions_do_not_contribute():
    model, sample = TinyLM(), make_sample()
    crit = build("label_smoothed_cross_entropy",
                 LabelSmoothedCrossEntropyConfig(label_smoothing=0.1, loss_impl="torch"))
    before = crit(model, sample)[0].item()
    sample.tokens[1, 3] = 9  # input under a pad target changes the logits there only
    assert crit(model, sample)[0].item() == pytest.approx(before, rel=1e-6)


def test_z_loss_adds_squared_logsumexp():
    model, sample = TinyLM(), make_sample()
    plain = build("cross_entropy", CrossEntropyConfig(loss_impl="torch"))(model, sample)[0].item()
    with_z = build("cross_entropy", CrossEntropyConfig(z_loss=1e-2, loss_impl="torch"))(model, sample)[0].item()
    logits = model(**sample.net_input)
    lse = torch.logsumexp(logits.double(), -1)[sample.targets != PAD]
    assert with_z - plain == pytest.approx(1e-2 * (lse ** 2).sum().item(), rel=1e-4)


def test_fused_linear_ce_equals_logits_path_in_loss_and_grads():
    sample = make_sample()
    results = []
    for fused in (False, True):
        model = TinyLM()
        cfg = LabelSmoothedCrossEntropyConfig(label_smoothing=0.1, fused_linear_ce=fused, loss_impl="torch")
        loss, _, log = build("label_smoothed_cross_entropy", cfg)(model, sample)
        loss.backward()
        results.append((loss.item(), log["nll_loss"], model.out.weight.grad.clone(), model.embed.weight.grad.clone()))
    (l0, n0, gw0, ge0), (l1, n1, gw1, ge1) = results
    assert l1 == pytest.approx(l0, rel=1e-6) and n1 == pytest.approx(n0, rel=1e-6)
    torch.testing.assert_close(gw1, gw0)
    torch.testing.assert_close(ge1, ge0)


def test_fused_linear_ce_needs_the_model_api():
    class LogitsOnly(nn.Module):
        def forward(self, src_tokens):
            return torch.zeros(*src_tokens.shape, V)

    crit = build("cross_entropy", CrossEntropyConfig(fused_linear_ce=True, loss_impl="torch"))
    with pytest.raises(BigseqError, match="fused-linear-ce"):
        crit(LogitsOnly(), make_sample())


def test_reduce_metrics_gives_per_token_loss_and_ppl():
    model, sample = TinyLM(), make_sample()
    _, _, log = build("cross_entropy", CrossEntropyConfig(loss_impl="torch"))(model, sample)
    out = CRITERION_REGISTRY.get("cross_entropy").cls.reduce_metrics(log)
    assert out["loss"] == pytest.approx(log["loss"] / 6)
    assert out["ppl"] == pytest.approx(math.exp(log["nll_loss"] / 6))


def test_label_smoothing_out_of_range_is_a_user_error():
    with pytest.raises(BigseqError, match="label-smoothing"):
        build("label_smoothed_cross_entropy", LabelSmoothedCrossEntropyConfig(label_smoothing=1.5))
