"""Token-level cross entropy: the loss of language models and seq2seq models.

The loss is a SUM over non-pad target tokens (see ``BaseCriterion``); the
arithmetic lives in ``bigseq.kernels`` so the fast kernels and the torch
reference give the same numbers. The fused LM-head loss computes plain
``hidden @ weight.T`` logits, so a model whose logits are soft-capped (Gemma 2's
``output_logit_softcap``) is refused there rather than trained on other logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bigseq import kernels
from bigseq.criterions.base import BaseCriterion
from bigseq.errors import BigseqError
from bigseq.registry import register_criterion


@dataclass(kw_only=True)
class CrossEntropyConfig:
    z_loss: float = 0.0
    """Weight of the z-loss (logsumexp(logits)^2 per token) that keeps the softmax normaliser near 1."""
    loss_impl: Literal["auto", "torch", "triton", "cuda"] = "auto"
    """Loss kernel: 'auto' picks the fastest available, 'torch' is the reference."""
    fused_linear_ce: bool = False
    """Fuse the output projection into the loss so the (tokens x vocab) logits are never stored whole."""


@register_criterion("cross_entropy", CrossEntropyConfig)
class CrossEntropyCriterion(BaseCriterion):
    label_smoothing = 0.0

    def forward(self, model, sample):
        target_N = sample.targets.reshape(-1)
        kwargs = dict(ignore_index=self.padding_idx, label_smoothing=self.label_smoothing, smoothing="fairseq",
                      z_loss=self.cfg.z_loss, reduction="sum", impl=self.cfg.loss_impl)
        if self.cfg.fused_linear_ce:
            hidden_ND, weight_VD = self._hidden_and_output_weight(model, sample)
            loss, nll_loss = kernels.linear_cross_entropy(hidden_ND, weight_VD, target_N, **kwargs)
        else:
            logits_BTV = model(**sample.net_input)
            logits_NV = logits_BTV.reshape(-1, logits_BTV.shape[-1])
            loss, nll_loss = kernels.cross_entropy(logits_NV, target_N, **kwargs)
        sample_size = sample.ntokens
        logging_output = {
            "loss": float(loss.detach()),
            "nll_loss": float(nll_loss.detach()),
            "ntokens": int(sample.ntokens),
            "nsentences": int(sample.nsentences),
            "sample_size": int(sample_size),
        }
        return loss, sample_size, logging_output

    @staticmethod
    def _hidden_and_output_weight(model, sample):
        if not hasattr(model, "forward_hidden") or not hasattr(model, "output_weight"):
            raise BigseqError(f"--fused-linear-ce: model {type(model).__name__} has no forward_hidden/output_weight; "
                              "drop --fused-linear-ce")
        if getattr(model, "output_logit_softcap", None) is not None:
            raise BigseqError("--fused-linear-ce does not soft-cap the logits as --final-logit-softcap says; "
                              "drop --fused-linear-ce")
        hidden_BTD = model.forward_hidden(**sample.net_input)
        weight_VD = model.output_weight
        if weight_VD.dim() != 2 or weight_VD.shape[1] != hidden_BTD.shape[-1]:
            # e.g. a ZeRO-3 partitioned weight, which is only whole inside its module's forward
            raise BigseqError(f"--fused-linear-ce: output weight has shape {tuple(weight_VD.shape)}, expected "
                              f"(vocab, {hidden_BTD.shape[-1]}) (not usable with --zero-stage 3); "
                              "drop --fused-linear-ce")
        return hidden_BTD.reshape(-1, hidden_BTD.shape[-1]), weight_VD
