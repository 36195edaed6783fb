"""Shared helpers of the fairseq interop tests: the committed fixtures (made by fixtures/fairseq/make_fixtures.py)."""

import os

import pytest
import torch

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "fairseq")
TRANSLATION = ("transformer_postnorm", "transformer_prenorm")
LMS = ("transformer_lm_gpt2_tiny", "transformer_lm_learned")
ALL_MODELS = TRANSLATION + LMS


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


def data_bin(model: str) -> str:
    return fixture("data-bin" if model in TRANSLATION else "lm-bin")


def bigseq_logits(model: torch.nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ours, fairseq's) logits on the fixture's batch; an LM's only at real tokens (fairseq masks pads as
    keys, bigseq's LM has no pads: a right-padded row's real tokens never see them)."""
    batch = torch.load(fixture(f"{name}_logits.pt"), weights_only=True)
    with torch.no_grad():
        if name in TRANSLATION:
            ours = model(batch["src_tokens"], batch["src_lengths"], batch["prev_output_tokens"])
            real = batch["prev_output_tokens"].ne(1)
        else:
            ours = model(batch["src_tokens"])
            real = torch.arange(batch["src_tokens"].shape[1])[None, :] < batch["lengths"][:, None]
    return ours.float()[real], batch["logits"].float()[real]


@pytest.fixture(scope="module")
def fairseq_state():
    from bigseq.checkpoint.fairseq_pickle import load_fairseq_checkpoint
    return lambda name: load_fairseq_checkpoint(fixture(f"{name}.pt"))
