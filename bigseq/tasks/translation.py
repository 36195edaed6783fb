"""translation: sequence to sequence over a bitext data dir (fairseq's ``translation`` task).

The data dir is one written by ``bigseq preprocess -s SRC -t TGT`` or by
``fairseq-preprocess --dataset-impl mmap``, read as is: ``dict.{lang}.txt`` and
``{split}.{src}-{tgt}.{lang}.bin/.idx`` (the pair may also be named the other way
round, ``{split}.{tgt}-{src}``). Without -s/-t the pair is read from the file names.
bigseq's metadata.json, when present, only adds the tokenizers used for the text.

For the model family: ``src_vocab_size``, ``tgt_vocab_size``, ``pad_idx``, ``eos_idx``,
``joined_dictionary`` (the two dictionaries are the same), ``vocab_size`` (= target),
``source_dictionary`` / ``target_dictionary``.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass

import numpy as np

from bigseq.data.dictionary import Dictionary
from bigseq.data.indexed_dataset import MMapIndexedDataset, exists
from bigseq.data.iterators import EpochBatchIterator
from bigseq.data.language_pair import LanguagePairDataset, oversized
from bigseq.data.metadata import METADATA_FILE, read_metadata
from bigseq.data.tokenizer import Tokenizer
from bigseq.errors import BigseqError
from bigseq.registry import register_task
from bigseq.tasks.base import Task

_FIX = "run `bigseq preprocess -s SRC -t TGT --trainpref TRAIN --validpref VALID --destdir {}`"
_PAIR_FILE = re.compile(r"^[^.]+\.([^.\-]+)-([^.\-]+)\.[^.]+\.idx$")
_DETOK = ("space", "moses")


@dataclass(kw_only=True)
class TranslationConfig:
    data: str | None = dataclasses.field(default=None, metadata={"positional": True})
    """Data directory written by `bigseq preprocess -s SRC -t TGT` (or by fairseq-preprocess)."""
    source_lang: str | None = dataclasses.field(default=None, metadata={"aliases": ("-s",)})
    """Source language (default: read from the data file names)."""
    target_lang: str | None = dataclasses.field(default=None, metadata={"aliases": ("-t",)})
    """Target language (default: read from the data file names)."""
    left_pad_source: bool = True
    """Pad sources on the left (fairseq's default; --no-left-pad-source pads on the right)."""
    left_pad_target: bool = False
    """Pad targets on the left."""
    max_source_positions: int = 1024
    """Longest source, eos included; longer training pairs are dropped (see --truncate-source)."""
    max_target_positions: int = 1024
    """Longest target, eos included; longer training pairs are dropped."""
    truncate_source: bool = False
    """Cut longer sources to --max-source-positions (first tokens + eos) instead of dropping the pair."""
    num_batch_buckets: int = 0
    """Pad batches to one of N length quantiles (fixed shapes, e.g. for compiled models; 0: off)."""
    skip_invalid_size_inputs_valid_test: bool = False
    """Drop over-long validation/test pairs instead of stopping with an error."""
    eval_bleu: bool = False
    """Translate the validation set with beam search (--eval-bleu-args) and log its corpus BLEU."""
    eval_bleu_args: str = "{}"
    """Generation arguments for --eval-bleu as a JSON object, e.g. '{"beam": 5, "max_len_a": 1.2, "max_len_b": 10}'."""
    eval_bleu_detok: str = "space"
    """Detokenizer applied before --eval-bleu scores: space or moses (needs sacremoses)."""
    eval_bleu_detok_args: str = "{}"
    """Arguments of the --eval-bleu-detok detokenizer as a JSON object."""
    eval_tokenized_bleu: bool = False
    """Score --eval-bleu on tokenized text (sacrebleu tokenize='none')."""
    eval_bleu_remove_bpe: str | None = None
    """Remove this BPE continuation marker before --eval-bleu scores ('@@ ' for subword-nmt, or sentencepiece)."""
    eval_bleu_print_samples: bool = False
    """Print a hypothesis and its reference per validation batch with --eval-bleu."""


def _json_object(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BigseqError(f"{flag} {text!r}: not valid JSON ({e.msg}); give an object, "
                          "e.g. '{\"beam\": 5}'") from None
    if not isinstance(value, dict):
        raise BigseqError(f"{flag} {text!r}: expected a JSON object, e.g. '{{\"beam\": 5}}'")
    return value


def infer_language_pair(data_dir: str) -> tuple[str, str]:
    """The (src, tgt) of the ``{split}.{src}-{tgt}.{lang}.idx`` files (fairseq's infer_language_pair)."""
    pairs = sorted({m.groups() for m in map(_PAIR_FILE.match, os.listdir(data_dir)) if m})
    if len(pairs) == 1:
        return pairs[0]
    if not pairs:
        raise BigseqError(f"{data_dir} has no SPLIT.SRC-TGT.LANG.bin/.idx files (no language pair); "
                          f"{_FIX.format(data_dir)}")
    raise BigseqError(f"{data_dir} holds several language pairs ({', '.join('-'.join(p) for p in pairs)}); "
                      "choose one with -s SRC -t TGT")


@register_task("translation", TranslationConfig)
class TranslationTask(Task):
    def __init__(self, cfg: TranslationConfig):
        super().__init__(cfg)
        self._check_config(cfg)
        self.data_dir = cfg.data
        src, tgt = cfg.source_lang, cfg.target_lang
        if src is None or tgt is None:
            a, b = infer_language_pair(self.data_dir)
            if src is None and tgt is None:
                src, tgt = a, b
            elif src is None:
                src = b if tgt == a else a
            else:
                tgt = b if src == a else a
        self.source_lang, self.target_lang = src, tgt
        dicts = []
        for lang in (src, tgt):
            path = os.path.join(self.data_dir, f"dict.{lang}.txt")
            if not os.path.isfile(path):
                raise BigseqError(f"{path} not found: {self.data_dir} has no data for the pair {src}-{tgt}; "
                                  f"check -s/-t or {_FIX.format(self.data_dir)}")
            dicts.append(Dictionary.load(path))
        self.source_dictionary, self.target_dictionary = dicts
        s, t = dicts
        if (s.pad_idx, s.eos_idx, s.unk_idx) != (t.pad_idx, t.eos_idx, t.unk_idx):
            raise BigseqError(f"dict.{src}.txt and dict.{tgt}.txt disagree on pad/eos/unk ids; binarize both with "
                              "the same tool")
        self.joined_dictionary = s.symbols == t.symbols
        self.source_tokenizer = self.target_tokenizer = None
        self._load_tokenizers()
        self.pairs: dict[str, tuple[MMapIndexedDataset, MMapIndexedDataset]] = {}

    @staticmethod
    def _check_config(cfg: TranslationConfig) -> None:
        if not cfg.data:
            raise BigseqError("no data directory given; pass it first, e.g. `bigseq train data-bin --task "
                              f"translation ...` (to make one, {_FIX.format('data-bin')})")
        if not os.path.isdir(cfg.data):
            raise BigseqError(f"data directory {cfg.data} does not exist; {_FIX.format(cfg.data)}")
        if cfg.max_source_positions < 2 or cfg.max_target_positions < 2:
            raise BigseqError("--max-source-positions and --max-target-positions must be >= 2 (eos counts)")
        if cfg.num_batch_buckets < 0:
            raise BigseqError(f"--num-batch-buckets must be >= 0, got {cfg.num_batch_buckets}")
        _json_object(cfg.eval_bleu_args, "--eval-bleu-args")
        _json_object(cfg.eval_bleu_detok_args, "--eval-bleu-detok-args")
        if cfg.eval_bleu_detok not in _DETOK:
            raise BigseqError(f"--eval-bleu-detok {cfg.eval_bleu_detok!r}: use one of {', '.join(_DETOK)}")
        if cfg.eval_bleu and cfg.eval_bleu_detok == "moses" and importlib.util.find_spec("sacremoses") is None:
            raise BigseqError("--eval-bleu-detok moses needs the sacremoses package: pip install sacremoses "
                              "(or use --eval-bleu-detok space)")
        if cfg.eval_bleu:  # at start-up, not at the first validation an epoch later
            from bigseq.generation.config import BeamSearchConfig
            from bigseq.generation.text import post_process
            args = _json_object(cfg.eval_bleu_args, "--eval-bleu-args")
            try:
                BeamSearchConfig(**args)
            except TypeError as e:
                raise BigseqError(f"--eval-bleu-args {cfg.eval_bleu_args}: {e}; use generation flag names like "
                                  f"beam, max_len_a, max_len_b, lenpen") from None
            post_process("", cfg.eval_bleu_remove_bpe)

    def _load_tokenizers(self) -> None:
        """The tokenizers bigseq preprocess used (metadata.json), for turning ids back into text."""
        if not os.path.isfile(os.path.join(self.data_dir, METADATA_FILE)):
            return
        files = read_metadata(self.data_dir).get("tokenizer", {}).get("files") or {}
        if self.source_lang in files and self.target_lang in files:
            self.source_tokenizer, self.target_tokenizer = (Tokenizer.load(os.path.join(self.data_dir, files[lang]))
                                                            for lang in (self.source_lang, self.target_lang))

    # vocabulary (what the model family reads) ---------------------------------------
    @property
    def src_vocab_size(self) -> int:
        return len(self.source_dictionary)

    @property
    def tgt_vocab_size(self) -> int:
        return len(self.target_dictionary)

    @property
    def vocab_size(self) -> int:
        return self.tgt_vocab_size

    @property
    def pad_idx(self) -> int:
        return self.target_dictionary.pad_idx

    @property
    def eos_idx(self) -> int:
        return self.target_dictionary.eos_idx

    # BLEU -------------------------------------------------------------------------------
    def eval_bleu_settings(self) -> dict:
        """The parsed --eval-bleu options, what the generator-based BLEU validation will consume."""
        c = self.cfg
        return {"generation": _json_object(c.eval_bleu_args, "--eval-bleu-args"), "detok": c.eval_bleu_detok,
                "detok_args": _json_object(c.eval_bleu_detok_args, "--eval-bleu-detok-args"),
                "tokenized": c.eval_tokenized_bleu, "remove_bpe": c.eval_bleu_remove_bpe,
                "print_samples": c.eval_bleu_print_samples}

    def bleu_statistics(self, sample, model) -> dict:
        """--eval-bleu: sacrebleu's sufficient statistics of one validation batch (fairseq's _bleu_counts_i,
        _bleu_totals_i, _bleu_sys_len, _bleu_ref_len), translated with the --eval-bleu-args beam search."""
        from bigseq.generation.scoring import eval_bleu_statistics
        model = getattr(model, "module", model)  # the engine's model: its encode/decode
        return eval_bleu_statistics(model, sample, target_dictionary=self.target_dictionary,
                                    target_tokenizer=self.target_tokenizer, **self.eval_bleu_settings()
                                    ).logging_output()

    def valid_step(self, sample, model, criterion):
        loss, sample_size, log = super().valid_step(sample, model, criterion)
        if self.cfg.eval_bleu:
            log = {**log, **self.bleu_statistics(sample, model)}
        return loss, sample_size, log

    @property
    def valid_sum_keys(self) -> tuple[str, ...]:
        if not self.cfg.eval_bleu:
            return ()
        from bigseq.generation.scoring import BleuStats
        return tuple(BleuStats().logging_output())

    def valid_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Corpus BLEU of the whole validation split (statistics summed over batches and ranks, then scored)."""
        if not self.cfg.eval_bleu:
            return {}
        from bigseq.generation.scoring import BleuStats
        return {"bleu": BleuStats.from_logging_output(sums).bleu()}

    # data ---------------------------------------------------------------------------------
    def load_dataset(self, split: str) -> tuple[MMapIndexedDataset, MMapIndexedDataset]:
        """The source and target mmap datasets of ``split`` (either pair order in the file names)."""
        src, tgt = self.source_lang, self.target_lang
        for pair in (f"{src}-{tgt}", f"{tgt}-{src}"):
            prefixes = [os.path.join(self.data_dir, f"{split}.{pair}.{lang}") for lang in (src, tgt)]
            if all(map(exists, prefixes)):
                break
        else:
            found = sorted({os.path.basename(p).split(".")[0] for p in glob.glob(os.path.join(self.data_dir, "*.idx"))})
            raise BigseqError(f"split '{split}' of {src}-{tgt} not found in {self.data_dir} (no {split}.{src}-{tgt}."
                              f"{src}/.{tgt} .bin/.idx; splits there: {', '.join(found) or 'none'}); "
                              f"{_FIX.format(self.data_dir)}")
        pair = tuple(MMapIndexedDataset(p) for p in prefixes)
        if len(pair[0]) != len(pair[1]):
            raise BigseqError(f"{prefixes[0]} has {len(pair[0]):,} sentences but {prefixes[1]} has "
                              f"{len(pair[1]):,}; {_FIX.format(self.data_dir)}")
        self.pairs[split] = pair
        return pair

    def dataset(self, split: str, *, ignore_invalid_inputs: bool, quiet: bool = False) -> LanguagePairDataset:
        """``split`` as a LanguagePairDataset, pairs longer than the max positions dropped (if allowed)."""
        src, tgt = self.pairs[split] if split in self.pairs else self.load_dataset(split)
        if len(src) == 0:
            raise BigseqError(f"split '{split}' in {self.data_dir} has no sentence pairs; {_FIX.format(self.data_dir)}")
        c = self.cfg
        src_sizes = src.sizes.clip(max=c.max_source_positions) if c.truncate_source else src.sizes
        bad = oversized(src_sizes, tgt.sizes, c.max_source_positions, c.max_target_positions)
        limits = f"--max-source-positions {c.max_source_positions} / --max-target-positions {c.max_target_positions}"
        if len(bad) and not ignore_invalid_inputs:
            i = int(bad[0])
            raise BigseqError(f"{len(bad):,} pairs of '{split}' are longer than {limits} (line {i + 1}: "
                              f"{src.sizes[i]} source, {tgt.sizes[i]} target tokens with eos); raise those, add "
                              "--truncate-source, or drop them with --skip-invalid-size-inputs-valid-test")
        if len(bad) and not quiet:
            print(f"bigseq: warning: dropped {len(bad):,} of {len(src):,} '{split}' pairs longer than {limits} "
                  "(eos included)", file=sys.stderr, flush=True)
        if len(bad) == len(src):
            raise BigseqError(f"no pair of '{split}' fits {limits}; raise them")
        keep = np.setdiff1d(np.arange(len(src)), bad) if len(bad) else None
        return LanguagePairDataset(src, tgt, pad_idx=self.pad_idx, eos_idx=self.eos_idx,
                                   left_pad_source=c.left_pad_source, left_pad_target=c.left_pad_target, keep=keep,
                                   truncate_source_to=c.max_source_positions if c.truncate_source else None,
                                   num_buckets=c.num_batch_buckets)

    def get_batch_iterator(self, split: str, *, batch_size: int | None, max_tokens: int | None, seed: int,
                           dp_rank: int, dp_size: int, update_freq: int = 1, epoch: int = 1, shuffle: bool = True,
                           drop_last: bool | None = None, ignore_invalid_inputs: bool | None = None
                           ) -> EpochBatchIterator:
        """This rank's iterator over ``split``. Training (``shuffle``) drops over-long pairs with a warning;
        otherwise they are an error unless --skip-invalid-size-inputs-valid-test. Every pair is batched;
        ``drop_last`` (default: when training) drops a partial last update (fewer than --update-freq
        micro-batches)."""
        if ignore_invalid_inputs is None:
            ignore_invalid_inputs = shuffle or self.cfg.skip_invalid_size_inputs_valid_test
        ds = self.dataset(split, ignore_invalid_inputs=ignore_invalid_inputs, quiet=dp_rank != 0)
        longest = int(ds.lengths.max())
        if max_tokens is not None and max_tokens < longest:
            raise BigseqError(f"--max-tokens {max_tokens} cannot hold the longest pair of '{split}' ({longest} tokens "
                              f"with eos); use --max-tokens >= {longest} or lower --max-source-positions/"
                              "--max-target-positions")
        return EpochBatchIterator(ds, batch_size=batch_size, max_tokens=max_tokens, seed=seed, dp_rank=dp_rank,
                                  dp_size=dp_size, update_freq=update_freq, epoch=epoch, shuffle=shuffle,
                                  drop_last=shuffle if drop_last is None else drop_last, name=split)
