"""The unigram baseline: the perplexity of a model that ignores context.

A trained LM is only interesting if it beats this; quickstart prints both.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from bigseq.data.indexed_dataset import MMapIndexedDataset


def unigram_perplexity(data_dir: str, train_split: str = "train", eval_split: str = "valid") -> float:
    """exp(cross-entropy of eval tokens under add-one-smoothed train token frequencies)."""
    with open(os.path.join(data_dir, "metadata.json")) as f:
        vocab_size = json.load(f)["vocab_size"]
    train = MMapIndexedDataset(os.path.join(data_dir, train_split))
    evals = MMapIndexedDataset(os.path.join(data_dir, eval_split))
    counts = np.bincount(np.asarray(train.tokens, dtype=np.int64), minlength=vocab_size).astype(np.float64) + 1.0
    log_probs = np.log(counts / counts.sum())
    eval_tokens = np.asarray(evals.tokens, dtype=np.int64)
    return math.exp(-float(log_probs[eval_tokens].mean()))
