"""The ``transformer_tiny`` encoder-decoder on a tiny vocabulary, for the generation tests.

Ids follow fairseq's dictionaries: <s>=0 <pad>=1 </s>=2 <unk>=3, then words.
``sharpness`` scales the output projection, so choices are not near-ties.
"""

from __future__ import annotations

import dataclasses

import torch

from bigseq.models.transformer.architectures import transformer_tiny
from bigseq.models.transformer.model import TransformerModel

PAD, EOS, UNK = 1, 2, 3


def tiny_transformer(vocab: int = 12, seed: int = 0, sharpness: float = 1.0, max_positions=(64, 64),
                     **cfg) -> TransformerModel:
    config = dataclasses.replace(transformer_tiny(), max_source_positions=max_positions[0],
                                 max_target_positions=max_positions[1], **cfg)
    model = TransformerModel(config, src_vocab_size=vocab, tgt_vocab_size=vocab, pad_idx=PAD)
    model.reset_parameters(seed)
    with torch.no_grad():
        model.output_weight.mul_(sharpness)
    return model.eval()


def left_pad(sentences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources as fairseq collates them: left-padded, each ending with eos."""
    width = max(len(s) for s in sentences)
    tokens = torch.full((len(sentences), width), PAD, dtype=torch.long)
    for i, s in enumerate(sentences):
        tokens[i, width - len(s):] = torch.tensor(s)
    return tokens, torch.tensor([len(s) for s in sentences])
