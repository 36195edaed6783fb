"""language_modeling: next-token prediction over blocks of a binarized corpus.

The data directory is either one written by ``bigseq preprocess``
(metadata.json, tokenizer.json, SPLIT.bin/.idx) or one written by
``fairseq-preprocess --only-source --dataset-impl mmap`` (dict.txt,
SPLIT.bin/.idx), read as is.
"""

from __future__ import annotations

import dataclasses
import glob
import inspect
import os
from dataclasses import dataclass
from typing import Literal

from bigseq.data.dictionary import Dictionary
from bigseq.data.indexed_dataset import MMapIndexedDataset, exists
from bigseq.data.iterators import EpochBatchIterator
from bigseq.data.lm_dataset import LMDataset
from bigseq.data.metadata import METADATA_FILE, read_metadata
from bigseq.data.token_blocks import TokenBlocks
from bigseq.data.tokenizer import Tokenizer
from bigseq.errors import BigseqError
from bigseq.models.family import get_family
from bigseq.registry import register_task
from bigseq.tasks.base import Task

_FIX = "run `bigseq preprocess --trainpref TRAIN --validpref VALID --destdir {}`"


@dataclass(kw_only=True)
class LanguageModelingConfig:
    data: str | None = dataclasses.field(default=None, metadata={"positional": True})
    """Data directory written by `bigseq preprocess` (or by fairseq-preprocess --only-source --dataset-impl mmap)."""
    tokens_per_sample: int = 512
    """Tokens per training sample (the model's context length during training)."""
    sample_break_mode: Literal["none", "eos", "complete"] = "none"
    """How samples are cut: 'none' = fixed windows over the token stream; 'eos' = one document
    per sample; 'complete' = whole documents packed into samples."""
    document_mask: bool = False
    """Attend within documents only: positions restart and attention is cut at each eos and row start
    (Megatron's --reset-position-ids --reset-attention-mask)."""


@register_task("language_modeling", LanguageModelingConfig)
class LanguageModelingTask(Task):
    def __init__(self, cfg: LanguageModelingConfig):
        super().__init__(cfg)
        if not cfg.data:
            raise BigseqError("no data directory given; pass it first, e.g. `bigseq train data-bin ...` "
                              f"(to make one, {_FIX.format('data-bin')})")
        if cfg.tokens_per_sample < 1:
            raise BigseqError(f"--tokens-per-sample must be >= 1, got {cfg.tokens_per_sample}")
        self.data_dir = cfg.data
        self.datasets: dict[str, TokenBlocks] = {}
        self.tokenizer: Tokenizer | None = None
        self.dictionary: Dictionary | None = None  # fairseq data dirs
        self.metadata: dict | None = None  # bigseq data dirs
        if not os.path.isdir(self.data_dir):
            raise BigseqError(f"data directory {self.data_dir} does not exist; {_FIX.format(self.data_dir)}")
        if os.path.isfile(os.path.join(self.data_dir, METADATA_FILE)):
            self._load_bigseq_dir()
        elif os.path.isfile(os.path.join(self.data_dir, "dict.txt")):
            self.dictionary = Dictionary.load(os.path.join(self.data_dir, "dict.txt"))
            d = self.dictionary
            self._vocab_size, self._pad, self._eos = len(d), d.pad_idx, d.eos_idx
        else:
            raise BigseqError(f"{self.data_dir} has neither {METADATA_FILE} (bigseq) nor dict.txt (fairseq); "
                              f"{_FIX.format(self.data_dir)}")

    def _load_bigseq_dir(self) -> None:
        meta = read_metadata(self.data_dir)
        if meta.get("format") == "bigseq-bitext":
            raise BigseqError(f"{self.data_dir} holds parallel text ({meta.get('source_lang')}-"
                              f"{meta.get('target_lang')}); train on it with --task translation")
        try:
            self._vocab_size, self._pad, self._eos = int(meta["vocab_size"]), int(meta["pad_idx"]), int(meta["eos_idx"])
        except (KeyError, TypeError, ValueError):
            raise BigseqError(f"{os.path.join(self.data_dir, METADATA_FILE)} lacks vocab_size/pad_idx/eos_idx; "
                              f"{_FIX.format(self.data_dir)}") from None
        self.metadata = meta
        if os.path.isfile(os.path.join(self.data_dir, "tokenizer.json")):
            self.tokenizer = Tokenizer.load(self.data_dir)

    # vocabulary -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def pad_idx(self) -> int:
        return self._pad

    @property
    def eos_idx(self) -> int:
        return self._eos

    @property
    def sequence_length(self) -> int:
        return self.cfg.tokens_per_sample

    def build_model(self, model_name: str, model_cfg, seed: int = 1):
        if self.cfg.document_mask:  # before the build, which may be long
            check_document_mask(get_family(model_name).model_cls, model_name)
        return super().build_model(model_name, model_cfg, seed)

    # data -------------------------------------------------------------------------
    def load_dataset(self, split: str) -> TokenBlocks:
        prefix = os.path.join(self.data_dir, split)
        if not exists(prefix):
            found = sorted({os.path.basename(p)[:-4] for p in glob.glob(os.path.join(self.data_dir, "*.idx"))})
            raise BigseqError(f"split '{split}' not found in {self.data_dir} (no {split}.bin/{split}.idx; "
                              f"splits there: {', '.join(found) or 'none'}); {_FIX.format(self.data_dir)}")
        ds = MMapIndexedDataset(prefix)
        blocks = TokenBlocks.build(ds.tokens, ds.sizes, tokens_per_sample=self.cfg.tokens_per_sample,
                                   break_mode=self.cfg.sample_break_mode, eos=self.eos_idx)
        if len(blocks) == 0:
            raise BigseqError(f"split '{split}' in {self.data_dir} is empty (no tokens to predict); "
                              f"{_FIX.format(self.data_dir)}")
        self.datasets[split] = blocks
        return blocks

    def get_batch_iterator(self, split: str, *, batch_size: int | None, max_tokens: int | None, seed: int,
                           dp_rank: int, dp_size: int, update_freq: int = 1, epoch: int = 1, shuffle: bool = True,
                           drop_last: bool | None = None, pad_to_length: int | None = None) -> EpochBatchIterator:
        """This rank's iterator over ``split``; ``drop_last`` defaults to ``shuffle`` (training).

        Without ``drop_last`` (validation) the last partial micro-batch is kept and split as
        evenly as possible; a rank left without samples gets one all-pad row.
        """
        blocks = self.datasets[split] if split in self.datasets else self.load_dataset(split)
        dataset = LMDataset(blocks, self.pad_idx, document_mask=self.cfg.document_mask)
        return EpochBatchIterator(dataset, batch_size=batch_size, max_tokens=max_tokens,
                                  seed=seed, dp_rank=dp_rank, dp_size=dp_size, update_freq=update_freq,
                                  epoch=epoch, shuffle=shuffle, drop_last=shuffle if drop_last is None else drop_last,
                                  pad_to_length=pad_to_length, name=split)


def check_document_mask(model_cls: type, model_name: str) -> None:
    """--document-mask hands the model positions and cu_seqlens: refuse a model whose forward takes neither."""
    params = inspect.signature(model_cls.forward).parameters
    if not {"positions", "cu_seqlens"} <= params.keys():
        raise BigseqError(f"--document-mask: model {model_name} takes no positions/cu_seqlens in its forward; "
                          "drop --document-mask")
