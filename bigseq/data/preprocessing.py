"""``bigseq preprocess``: raw text -> tokenizer + mmap ``.bin/.idx`` splits + metadata.json.

With ``-s/-t`` it binarizes parallel text instead, as fairseq-preprocess does
(``bitext_preprocessing.py``); what follows is the monolingual (LM) path.

Each split is read with HF ``datasets``, tokenized in a batched, parallel
``map`` (``encode_batch_fast``), and streamed into an mmap dataset where every
document is its tokens followed by eos. Everything is first written into a
staging folder inside ``--destdir`` and moved into place at the end,
``metadata.json`` last, so a failed run never leaves a half-written data dir.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

import datasets
from tqdm import tqdm

from bigseq.data import indexed_dataset
from bigseq.data.bitext_preprocessing import check_bitext_config, preprocess_bitext
from bigseq.data.metadata import METADATA_FILE, METADATA_VERSION, write_metadata
from bigseq.data.sources import Source, load_source, resolve_source
from bigseq.data.tokenizer import Tokenizer
from bigseq.errors import BigseqError

DEFAULT_VOCAB_SIZE = 32000


@dataclass(kw_only=True)
class PreprocessConfig:
    trainpref: str | None = None
    """Training data: a text file or glob (one document per line), json:PATH_OR_GLOB,
    parquet:PATH_OR_GLOB, or a folder saved with datasets.save_to_disk. With -s/-t: the prefix
    of the PREFIX.SRC and PREFIX.TGT files (one sentence per line)."""
    validpref: str | None = None
    """Validation data (same forms as --trainpref); with -s/-t comma-separated prefixes give valid, valid1, ..."""
    testpref: str | None = None
    """Test data (same forms as --validpref)."""
    destdir: str = "data-bin"
    """Output folder: {train,valid,test}.bin/.idx, tokenizer.json, metadata.json (with -s/-t: fairseq's files)."""
    vocab_size: int | None = None
    """Train a byte-level BPE tokenizer of this many tokens on the training data (default 32000)."""
    tokenizer_dir: str | None = None
    """Use this tokenizer (a folder with a tokenizer.json, e.g. saved by transformers) instead of training one."""
    tokenizer: Literal["none", "train"] | None = None
    """How text becomes ids: 'train' a byte-level BPE (the default without -s/-t), or 'none': the text
    is already tokenized/BPE'd and whitespace tokens are looked up in a dictionary (the default with
    -s/-t, as fairseq-preprocess). --tokenizer-dir loads a tokenizer instead."""
    source_lang: str | None = field(default=None, metadata={"aliases": ("-s",)})
    """Source language: binarize parallel text PREFIX.SRC/PREFIX.TGT as fairseq-preprocess does."""
    target_lang: str | None = field(default=None, metadata={"aliases": ("-t",)})
    """Target language (with -s)."""
    joined_dictionary: bool = False
    """One dictionary (or one tokenizer) for both languages, built from both training sides."""
    srcdict: str | None = None
    """Reuse this source dictionary (fairseq dict.txt) instead of building one."""
    tgtdict: str | None = None
    """Reuse this target dictionary (fairseq dict.txt) instead of building one."""
    nwordssrc: int = -1
    """Source dictionary size, specials included (-1: every token); with --tokenizer train, its vocabulary size."""
    nwordstgt: int = -1
    """Target dictionary size, specials included (-1: every token); with --tokenizer train, its vocabulary size."""
    thresholdsrc: int = 0
    """Source tokens seen fewer times than this become <unk>."""
    thresholdtgt: int = 0
    """Target tokens seen fewer times than this become <unk>."""
    padding_factor: int = 8
    """Pad dictionaries with madeupwordNNNN to a multiple of this size."""
    workers: int = 1
    """Parallel processes for reading and tokenizing."""
    text_column: str = "text"
    """Column holding the text in json/parquet/saved-dataset inputs."""
    tokenizer_train_chars: int = 500_000_000
    """Train the tokenizer on at most this many characters from the start of the training data."""


def _check_config(cfg: PreprocessConfig) -> dict[str, Source]:
    bitext_only = [f for f in ("joined_dictionary", "srcdict", "tgtdict") if getattr(cfg, f)]
    bitext_only += [f for f in ("nwordssrc", "nwordstgt", "thresholdsrc", "thresholdtgt") if getattr(cfg, f) > 0]
    if bitext_only or cfg.tokenizer == "none":
        flags = ", ".join("--" + f.replace("_", "-") for f in bitext_only) or "--tokenizer none"
        raise BigseqError(f"{flags}: for parallel text only; add -s SRC -t TGT")
    if not cfg.trainpref:
        raise BigseqError("--trainpref is required (the training text, e.g. --trainpref data/train.txt)")
    if cfg.vocab_size is not None and cfg.tokenizer_dir is not None:
        raise BigseqError("--vocab-size trains a new tokenizer and --tokenizer-dir loads one; give only one")
    if cfg.workers < 1:
        raise BigseqError(f"--workers must be >= 1, got {cfg.workers}")
    specs = {"train": ("--trainpref", cfg.trainpref), "valid": ("--validpref", cfg.validpref),
             "test": ("--testpref", cfg.testpref)}
    return {split: resolve_source(spec, flag) for split, (flag, spec) in specs.items() if spec}


def _make_staging(destdir: str) -> str:
    try:
        os.makedirs(destdir, exist_ok=True)
        return tempfile.mkdtemp(prefix=".preprocess-", dir=destdir)
    except OSError as e:
        raise BigseqError(f"--destdir {destdir}: cannot write there ({e.strerror or e}); "
                          "choose a writable folder") from None


def _tokenize_batch(batch, *, hf_tokenizer, column: str, eos: int):
    texts = [t for t in batch[column] if t and not t.isspace()]  # empty lines are skipped (and counted)
    encodings = hf_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return {"ids": [e.ids + [eos] for e in encodings]}


def _training_texts(ds: datasets.Dataset, column: str, max_chars: int):
    used = 0
    for batch in ds.iter(batch_size=1000):
        texts = [t for t in batch[column] if t and not t.isspace()]
        yield texts
        used += sum(map(len, texts))
        if used >= max_chars:
            return


def _binarize(ds, column: str, split: str, tokenizer: Tokenizer, staging: str, workers: int) -> dict:
    """Tokenize one split into staging/{split}.bin/.idx; returns its counts."""
    fn = functools.partial(_tokenize_batch, hf_tokenizer=tokenizer.hf, column=column, eos=tokenizer.eos_idx)
    datasets.enable_progress_bars()
    # tokenizers' thread pool does not survive the fork of map's workers; each worker tokenizes serially
    parallelism = os.environ.get("TOKENIZERS_PARALLELISM")
    if workers > 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        tokens_ds = ds.map(fn, batched=True, batch_size=1000, num_proc=workers if workers > 1 else None,
                           remove_columns=ds.column_names, desc=f"tokenizing {split}",
                           features=datasets.Features({"ids": datasets.List(datasets.Value("int32"))}),
                           new_fingerprint=uuid.uuid4().hex,
                           cache_file_name=os.path.join(staging, "cache", f"{split}-tokens.arrow"))
    finally:
        datasets.disable_progress_bars()
        if parallelism is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = parallelism
    builder = indexed_dataset.MMapIndexedDatasetBuilder(
        os.path.join(staging, split), indexed_dataset.best_dtype(tokenizer.vocab_size))
    num_tokens = 0
    with builder, tqdm(total=len(tokens_ds), unit="doc", desc=f"writing {split}") as bar:
        for chunk in tokens_ds.data.column("ids").chunks:
            sizes = chunk.value_lengths().to_numpy()
            builder.add_items(chunk.flatten().to_numpy(), sizes)
            num_tokens += int(sizes.sum())
            bar.update(len(sizes))
    return {"documents": len(tokens_ds), "tokens": num_tokens, "empty_skipped": len(ds) - len(tokens_ds)}


def _get_tokenizer(cfg: PreprocessConfig, train_ds, column: str) -> Tokenizer:
    if cfg.tokenizer_dir is not None:
        return Tokenizer.load(cfg.tokenizer_dir)
    texts = _training_texts(train_ds, column, cfg.tokenizer_train_chars)
    return Tokenizer.train(texts, cfg.vocab_size or DEFAULT_VOCAB_SIZE)


def preprocess(cfg: PreprocessConfig) -> dict:
    """Run the whole pipeline; returns the metadata written to DESTDIR/metadata.json."""
    if cfg.source_lang is not None or cfg.target_lang is not None:
        mode, splits = check_bitext_config(cfg)
        staging = _make_staging(cfg.destdir)
        try:
            return preprocess_bitext(cfg, staging, mode, splits)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    sources = _check_config(cfg)
    staging = _make_staging(cfg.destdir)
    bars_were_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        cache = os.path.join(staging, "cache")
        loaded, load_seconds = {}, {}
        for split, src in sources.items():
            start = time.perf_counter()
            loaded[split] = load_source(src, split, text_column=cfg.text_column, cache_dir=cache, workers=cfg.workers)
            load_seconds[split] = time.perf_counter() - start
        tokenizer = _get_tokenizer(cfg, loaded["train"][0], loaded["train"][1])
        stats = {}
        for split, (ds, column, invalid_bytes) in loaded.items():
            start = time.perf_counter()
            stats[split] = _binarize(ds, column, split, tokenizer, staging, cfg.workers)
            stats[split].update(invalid_utf8_bytes=invalid_bytes, source=sources[split].spec,
                                seconds=round(time.perf_counter() - start + load_seconds[split], 3))
            if stats[split]["documents"] == 0:
                raise BigseqError(f"{sources[split].spec}: no non-empty documents in the {split} data; "
                                  "check the path (and --text-column for json/parquet)")
        tokenizer.save(staging)
        metadata = _metadata(cfg, tokenizer, stats)
        _publish(staging, cfg.destdir, list(stats))
        write_metadata(cfg.destdir, metadata)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if bars_were_enabled:
            datasets.enable_progress_bars()
    print_summary(metadata, cfg.destdir)
    return metadata


def _metadata(cfg: PreprocessConfig, tokenizer: Tokenizer, stats: dict) -> dict:
    return {"format": "bigseq-mmap", "version": METADATA_VERSION, "vocab_size": tokenizer.vocab_size,
            **tokenizer.special_ids(), "dtype": str(indexed_dataset.best_dtype(tokenizer.vocab_size)),
            "tokenizer": {"kind": tokenizer.kind, "file": "tokenizer.json", "source": cfg.tokenizer_dir},
            "splits": stats}


def _publish(staging: str, destdir: str, splits: list[str]) -> None:
    stale = os.path.join(destdir, METADATA_FILE)
    if os.path.exists(stale):  # the dir is incomplete until the new metadata lands
        os.remove(stale)
    names = ["tokenizer.json", "tokenizer_config.json"]
    names += [f"{s}{ext}" for s in splits for ext in (".bin", ".idx")]
    for name in names:
        os.replace(os.path.join(staging, name), os.path.join(destdir, name))


def print_summary(metadata: dict, destdir: str) -> None:
    print(f"tokenizer: {metadata['tokenizer']['kind']}, vocab {metadata['vocab_size']} "
          f"-> {os.path.join(destdir, 'tokenizer.json')}")
    for split, s in metadata["splits"].items():
        rate = s["tokens"] / max(s["seconds"], 1e-9)
        print(f"{split}: {s['documents']:,} documents, {s['tokens']:,} tokens | skipped {s['empty_skipped']:,} "
              f"empty | replaced {s['invalid_utf8_bytes']:,} invalid UTF-8 bytes | {s['seconds']:.1f}s, "
              f"{rate:,.0f} tokens/s")
    print(f"wrote {destdir}: {', '.join(metadata['splits'])} (.bin/.idx), tokenizer.json, {METADATA_FILE}")

