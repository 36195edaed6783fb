"""``bigseq preprocess -s SRC -t TGT``: parallel text -> a data dir fairseq-preprocess would write.

Inputs are ``{pref}.{lang}`` files, one sentence per line, the two sides aligned line by
line. ``--tokenizer`` picks how lines become ids:

- ``none`` (the default for bitext, fairseq's own mode): the text is already tokenized or
  BPE'd; dictionaries are built from whitespace tokens exactly as fairseq builds them
  (or read with --srcdict/--tgtdict), unknown tokens become ``<unk>``.
- ``train``: a byte-level BPE is trained on the training text (one joint model with
  --joined-dictionary, else one per side; --nwordssrc/--nwordstgt or --vocab-size sizes it),
  and ``--tokenizer-dir DIR`` loads one for both sides. Its vocabulary is written in id order
  as ``dict.{lang}.txt`` (its specials must be fairseq's <s> <pad> </s> <unk> at 0-3), so the
  ids in the .bin files are the tokenizer's and fairseq reads the dir as well.

Written, as fairseq does: ``dict.{src}.txt``, ``dict.{tgt}.txt``, ``{split}.{src}-{tgt}.{lang}.bin/.idx``
(fairseq's mmap layout, uint16 below 65500 types), ``preprocess.log``; plus bigseq's
``metadata.json`` (informational: fairseq's files are the truth) and the tokenizer files.
Each sentence is its ids followed by eos (no bos). Everything is written into a staging
folder and moved into place at the end; every input is checked before any slow work.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from bigseq.data import indexed_dataset
from bigseq.data.dictionary import Dictionary
from bigseq.data.metadata import METADATA_FILE, METADATA_VERSION, write_metadata
from bigseq.data.text_lines import byte_ranges, count_lines, map_ranges, read_lines
from bigseq.data.tokenizer import Tokenizer
from bigseq.errors import BigseqError

DEFAULT_VOCAB_SIZE = 32000


@dataclass
class Side:
    """One language: its dictionary, and the tokenizer that makes its ids (None: whitespace tokens)."""
    lang: str
    dictionary: Dictionary
    tokenizer: Tokenizer | None = None


def split_prefixes(cfg) -> list[tuple[str, str]]:
    """(split name, prefix): train, then valid, valid1, ... and test, test1, ... (comma-separated prefixes)."""
    out = [("train", cfg.trainpref)] if cfg.trainpref else []
    for name, prefs in (("valid", cfg.validpref), ("test", cfg.testpref)):
        out += [(f"{name}{k or ''}", p) for k, p in enumerate((prefs or "").split(",")) if p]
    return out


def tokenizer_mode(cfg) -> str:
    if cfg.tokenizer_dir is not None:
        if cfg.tokenizer == "none":
            raise BigseqError("--tokenizer none reads whitespace tokens and --tokenizer-dir loads a tokenizer; "
                              "give only one")
        return "dir"
    return cfg.tokenizer or "none"


def check_bitext_config(cfg) -> tuple[str, list[tuple[str, str]]]:
    """Every flag and input file checked up front; returns (tokenizer mode, splits)."""
    src, tgt = cfg.source_lang, cfg.target_lang
    if not src or not tgt or src == tgt:
        raise BigseqError("bitext needs two different languages: -s/--source-lang SRC -t/--target-lang TGT")
    mode = tokenizer_mode(cfg)
    if cfg.joined_dictionary and cfg.srcdict and cfg.tgtdict:
        raise BigseqError("cannot use both --srcdict and --tgtdict with --joined-dictionary")
    if mode == "none" and cfg.vocab_size is not None:
        raise BigseqError("--vocab-size sizes a trained tokenizer; add --tokenizer train, or size whitespace "
                          "dictionaries with --nwordssrc/--nwordstgt")
    if mode != "none" and (cfg.srcdict or cfg.tgtdict or cfg.thresholdsrc > 0 or cfg.thresholdtgt > 0):
        raise BigseqError("--srcdict/--tgtdict/--thresholdsrc/--thresholdtgt are for whitespace dictionaries "
                          "(--tokenizer none); drop them with a subword tokenizer")
    if mode == "dir" and (cfg.nwordssrc > 0 or cfg.nwordstgt > 0 or cfg.vocab_size is not None):
        raise BigseqError("--tokenizer-dir fixes the vocabulary; drop --nwordssrc/--nwordstgt/--vocab-size")
    if cfg.padding_factor < 1 or cfg.workers < 1:
        raise BigseqError("--padding-factor and --workers must be >= 1")
    splits = split_prefixes(cfg)
    needs_train = mode == "train" or (mode == "none" and not (cfg.srcdict and (cfg.tgtdict or cfg.joined_dictionary)))
    if needs_train and not cfg.trainpref:
        raise BigseqError("--trainpref must be set if --srcdict/--tgtdict are not given (dictionaries and "
                          "tokenizers are built from the training text)")
    if not splits:
        raise BigseqError("nothing to binarize: give --trainpref, --validpref or --testpref")
    for lang, given in ((src, cfg.srcdict), (tgt, cfg.tgtdict)):
        existing = os.path.join(cfg.destdir, f"dict.{lang}.txt")
        if not given and os.path.exists(existing):
            raise BigseqError(f"{existing} already exists (fairseq-preprocess refuses to overwrite it); reuse it "
                              f"with --{'src' if lang == src else 'tgt'}dict or choose another --destdir")
    for path in filter(None, (cfg.srcdict, cfg.tgtdict)):
        if not os.path.isfile(path):
            raise BigseqError(f"{path}: dictionary not found (--srcdict/--tgtdict)")
    for split, pref in splits:
        paths = [f"{pref}.{lang}" for lang in (src, tgt)]
        for path in paths:
            if not os.path.isfile(path):
                raise BigseqError(f"{path}: file not found (the {split} data is read from PREFIX.{src} and "
                                  f"PREFIX.{tgt}); check --{split.rstrip('0123456789')}pref {pref}")
        counts = [count_lines(p) for p in paths]
        if counts[0] != counts[1]:
            raise BigseqError(f"{paths[0]} has {counts[0]:,} lines but {paths[1]} has {counts[1]:,}; the two sides "
                              "of a bitext must align line by line")
        if split == "train" and counts[0] == 0:
            raise BigseqError(f"{paths[0]}: no lines in the training data")
    return mode, splits


# whitespace tokens (run in worker processes: module-level functions) --------------------------
def _count_range(path: str, start: int, end: int) -> tuple[Counter, int]:
    lines = read_lines(path, start, end)
    return Counter(w for line in lines for w in line.split()), len(lines)


def _encode_range(path: str, start: int, end: int, dictionary: Dictionary) -> tuple[list, list[int], int]:
    ids, sizes, replaced = [], [], 0
    for line in read_lines(path, start, end):
        line_ids, n = dictionary.encode_line(line)
        ids += line_ids
        sizes.append(len(line_ids))
        replaced += n
    return ids, sizes, replaced


def _encode_range_tokenizer(path: str, start: int, end: int, tokenizer: Tokenizer) -> tuple[list, list[int], int]:
    encoded = [ids + [tokenizer.eos_idx] for ids in tokenizer.encode_batch(read_lines(path, start, end))]
    flat = [i for ids in encoded for i in ids]
    return flat, [len(ids) for ids in encoded], flat.count(tokenizer.unk_idx)


def build_dictionary(paths: list[str], *, threshold: int, nwords: int, padding_factor: int,
                     workers: int) -> Dictionary:
    counts = Counter()
    for path in paths:
        with tqdm(total=count_lines(path), unit="sent", desc=f"counting {os.path.basename(path)}") as bar:
            for part, n in map_ranges(_count_range, path, workers):
                counts.update(part)
                bar.update(n)
    return Dictionary.build(counts, threshold=threshold, nwords=nwords, padding_factor=padding_factor)


# subword tokenizers ----------------------------------------------------------------------------
def _training_lines(paths: list[str], max_chars: int):
    for path in paths:
        used = 0
        for start, end in byte_ranges(path):
            lines = read_lines(path, start, end)
            yield lines
            used += sum(map(len, lines))
            if used >= max_chars // len(paths):
                break


def make_sides(cfg, mode: str) -> tuple[Side, Side]:
    src, tgt = cfg.source_lang, cfg.target_lang
    train = {lang: f"{cfg.trainpref}.{lang}" for lang in (src, tgt)} if cfg.trainpref else {}
    if mode == "none":
        def whitespace(given, paths, threshold, nwords):
            if given:
                return Dictionary.load(given)
            return build_dictionary(paths, threshold=threshold, nwords=nwords, padding_factor=cfg.padding_factor,
                                    workers=cfg.workers)
        if cfg.joined_dictionary:
            d = whitespace(cfg.srcdict or cfg.tgtdict, [train.get(src), train.get(tgt)], cfg.thresholdsrc,
                           cfg.nwordssrc)
            return Side(src, d), Side(tgt, d)
        return (Side(src, whitespace(cfg.srcdict, [train.get(src)], cfg.thresholdsrc, cfg.nwordssrc)),
                Side(tgt, whitespace(cfg.tgtdict, [train.get(tgt)], cfg.thresholdtgt, cfg.nwordstgt)))

    def size(nwords):
        return nwords if nwords > 0 else (cfg.vocab_size or DEFAULT_VOCAB_SIZE)
    chars = cfg.tokenizer_train_chars
    if mode == "dir":
        tokenizers = dict.fromkeys((src, tgt), Tokenizer.load(cfg.tokenizer_dir))
    elif cfg.joined_dictionary:
        tokenizers = dict.fromkeys((src, tgt), Tokenizer.train(_training_lines(list(train.values()), chars),
                                                               size(cfg.nwordssrc)))
    else:
        tokenizers = {lang: Tokenizer.train(_training_lines([train[lang]], chars), size(n))
                      for lang, n in ((src, cfg.nwordssrc), (tgt, cfg.nwordstgt))}
    sides = []
    for lang, tok in tokenizers.items():
        vocab = [tok.hf.id_to_token(i) for i in range(tok.hf.get_vocab_size(with_added_tokens=True))]
        source = cfg.tokenizer_dir or f"the tokenizer trained for {lang}"
        sides.append(Side(lang, Dictionary.from_vocab(vocab, [0] * len(vocab), padding_factor=cfg.padding_factor,
                                                      source=source), tok))
    if tokenizers[src] is tokenizers[tgt]:
        sides[1].dictionary = sides[0].dictionary
    return sides[0], sides[1]


# binarizing ----------------------------------------------------------------------------------
def binarize(path: str, prefix: str, side: Side, workers: int, counts: np.ndarray | None) -> dict:
    """``path`` -> ``prefix``.bin/.idx; adds the id counts to ``counts`` when given."""
    dtype = indexed_dataset.fairseq_dtype(len(side.dictionary))
    fn, arg = (_encode_range, side.dictionary) if side.tokenizer is None else (_encode_range_tokenizer, side.tokenizer)
    stats = {"sentences": 0, "tokens": 0, "replaced": 0}
    builder = indexed_dataset.MMapIndexedDatasetBuilder(prefix, dtype, layout="fairseq")
    with builder, tqdm(total=count_lines(path), unit="sent", desc=f"binarizing {os.path.basename(path)}") as bar:
        # the tokenizer encodes with its own threads; forking worker processes would only slow it down
        for flat, sizes, replaced in map_ranges(fn, path, workers if side.tokenizer is None else 1, arg):
            flat = np.asarray(flat, dtype=np.int64)
            builder.add_items(flat, np.asarray(sizes, dtype=np.int64), documents=False)
            if counts is not None and len(flat):
                counts += np.bincount(flat, minlength=len(counts))[:len(counts)]
            stats["sentences"] += len(sizes)
            stats["tokens"] += len(flat)
            stats["replaced"] += replaced
            bar.update(len(sizes))
    return stats


def replaced_line(lang: str, path: str, s: dict) -> str:
    """fairseq-preprocess's log line for one binarized file."""
    share = 100 * s["replaced"] / max(s["tokens"], 1)
    return f"[{lang}] {path}: {s['sentences']} sents, {s['tokens']} tokens, {share:.3}% replaced (by <unk>)"


def preprocess_bitext(cfg, staging: str, mode: str, splits: list[tuple[str, str]]) -> dict:
    """Write everything into ``staging``, move it into --destdir; returns the metadata.
    ``mode`` and ``splits`` come from ``check_bitext_config``, run before ``staging`` was made."""
    src, tgt = cfg.source_lang, cfg.target_lang
    sides = make_sides(cfg, mode)
    counts = {s.lang: np.zeros(len(s.dictionary), dtype=np.int64) if s.tokenizer else None for s in sides}
    if mode != "none" and sides[0].dictionary is sides[1].dictionary:
        counts[tgt] = counts[src]  # one joint count for one dictionary
    log, stats = [repr(cfg)], {}
    for side in sides:
        log.append(f"[{side.lang}] Dictionary: {len(side.dictionary)} types")
        for split, pref in splits:
            path = f"{pref}.{side.lang}"
            prefix = os.path.join(staging, f"{split}.{src}-{tgt}.{side.lang}")
            stats.setdefault(split, {})[side.lang] = s = binarize(
                path, prefix, side, cfg.workers, counts[side.lang] if split == "train" else None)
            s["file"] = path
            log.append(replaced_line(side.lang, path, s))
    for side in sides:
        if counts[side.lang] is not None:
            side.dictionary.counts[4:] = counts[side.lang][4:].tolist()
        side.dictionary.save(os.path.join(staging, f"dict.{side.lang}.txt"))
    tokenizer_files = _save_tokenizers(sides, staging)
    log.append(f"Wrote preprocessed data to {cfg.destdir}")
    with open(os.path.join(staging, "preprocess.log"), "w", encoding="utf-8") as f:
        f.write("\n".join(log) + "\n")
    metadata = {"format": "bigseq-bitext", "version": METADATA_VERSION, "source_lang": src, "target_lang": tgt,
                "joined_dictionary": sides[0].dictionary is sides[1].dictionary,
                "vocab_size": {s.lang: len(s.dictionary) for s in sides},
                "bos_idx": 0, "pad_idx": 1, "eos_idx": 2, "unk_idx": 3,
                "dtype": {s.lang: str(indexed_dataset.fairseq_dtype(len(s.dictionary))) for s in sides},
                "tokenizer": {"mode": mode, "files": tokenizer_files, "source": cfg.tokenizer_dir},
                "splits": stats}
    _publish(staging, cfg.destdir)
    write_metadata(cfg.destdir, metadata)
    print("\n".join(log[1:]))
    return metadata


def _save_tokenizers(sides: tuple[Side, Side], staging: str) -> dict[str, str]:
    """Tokenizer folder per language: the top level for one shared tokenizer, else tokenizer.{lang}/."""
    if sides[0].tokenizer is None:
        return {}
    if sides[0].tokenizer is sides[1].tokenizer:
        sides[0].tokenizer.save(staging)
        return {s.lang: "." for s in sides}
    for s in sides:
        os.makedirs(os.path.join(staging, f"tokenizer.{s.lang}"))
        s.tokenizer.save(os.path.join(staging, f"tokenizer.{s.lang}"))
    return {s.lang: f"tokenizer.{s.lang}" for s in sides}


def _publish(staging: str, destdir: str) -> None:
    stale = os.path.join(destdir, METADATA_FILE)
    if os.path.exists(stale):  # the dir is incomplete until the new metadata lands
        os.remove(stale)
    for name in sorted(os.listdir(staging)):
        if name == "cache":
            continue
        target = os.path.join(destdir, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(os.path.join(staging, name), target)
