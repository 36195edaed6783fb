"""Raw inputs of ``bigseq preprocess`` -> an HF ``datasets.Dataset`` with one text column.

An input spec is a text file or glob (one document per line), ``json:PATH_OR_GLOB``,
``parquet:PATH_OR_GLOB``, or a folder written by ``datasets.save_to_disk``. Without a
prefix, files that all end in .json/.jsonl (or all in .parquet) are read as such.
Text files are decoded as UTF-8 with invalid bytes replaced by U+FFFD; a cheap
first pass counts those bytes so the summary can report them.
"""

from __future__ import annotations

import bz2
import codecs
import glob
import gzip
import lzma
import os
from dataclasses import dataclass

import datasets

from bigseq.errors import BigseqError

_FORMATS = ("text", "json", "parquet")  # text: forces one document per line whatever the extension
_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_SPLIT_NAMES = {"train": ("train",), "valid": ("validation", "valid", "dev"), "test": ("test",)}


@dataclass
class Source:
    spec: str
    """The spec as given on the command line."""
    kind: str
    """'text', 'json', 'parquet' or 'saved'."""
    paths: list[str]
    """Matched files (or the one saved-dataset folder)."""


def resolve_source(spec: str, flag: str) -> Source:
    """Check that an input spec names existing data (before any slow work starts)."""
    kind, pattern = "text", spec
    for fmt in _FORMATS:
        if spec.startswith(fmt + ":"):
            kind, pattern = fmt, spec[len(fmt) + 1:]
    pattern = os.path.expanduser(pattern)
    if os.path.isdir(pattern):
        if kind == "text" and any(os.path.exists(os.path.join(pattern, m)) for m in _SAVED_MARKERS):
            return Source(spec, "saved", [pattern])
        ext = {"text": "txt", "json": "json*", "parquet": "parquet"}[kind]
        paths = sorted(glob.glob(os.path.join(pattern, "**", f"*.{ext}"), recursive=True))
    elif glob.has_magic(pattern):
        paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    else:
        paths = [pattern] if os.path.isfile(pattern) else []
    if kind == "text" and not spec.startswith("text:"):
        kind = _kind_from_extensions(paths)
    if not paths:
        raise BigseqError(f"{flag} {spec}: no such file (nor matching files); give a text file or glob, "
                          "json:PATH, parquet:PATH or a folder saved with datasets.save_to_disk")
    return Source(spec, kind, paths)


def _kind_from_extensions(paths: list[str]) -> str:
    exts = {os.path.splitext(p.removesuffix(".gz"))[1].lower() for p in paths}
    if exts and exts <= {".json", ".jsonl"}:
        return "json"
    return "parquet" if exts == {".parquet"} else "text"


_invalid_bytes = [0]


def _count_invalid(err: UnicodeDecodeError):
    _invalid_bytes[0] += err.end - err.start
    return "\ufffd", err.end


def count_invalid_utf8(path: str) -> int:
    """Number of bytes of ``path`` that are not valid UTF-8 (decoded at C speed when there are none)."""
    codecs.register_error("bigseq-count-invalid", _count_invalid)  # the same handler every time
    opener = _OPENERS.get(os.path.splitext(path)[1], open)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="bigseq-count-invalid")
    before = _invalid_bytes[0]
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 24):
            decoder.decode(chunk)
    decoder.decode(b"", final=True)
    return _invalid_bytes[0] - before


def load_source(source: Source, split: str, *, text_column: str, cache_dir: str, workers: int
                ) -> tuple[datasets.Dataset, str, int]:
    """(dataset, its text column, invalid UTF-8 bytes replaced) for one input spec."""
    num_proc = min(workers, len(source.paths)) if workers > 1 and len(source.paths) > 1 else None
    try:
        if source.kind == "saved":
            ds = _pick_split(datasets.load_from_disk(source.paths[0]), source, split)
        elif source.kind == "text":
            ds = datasets.load_dataset("text", data_files=source.paths, split="train", cache_dir=cache_dir,
                                       encoding_errors="replace", num_proc=num_proc)
        else:
            ds = datasets.load_dataset(source.kind, data_files=source.paths, split="train", cache_dir=cache_dir,
                                       num_proc=num_proc)
    except BigseqError:
        raise
    except Exception as e:  # datasets/pyarrow raise many types for unreadable input
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BigseqError(f"{source.spec}: could not read it as {source.kind} data ({first_line}); "
                          "check the file format and the json:/parquet: prefix") from None
    if source.kind == "text":
        return ds, "text", sum(count_invalid_utf8(p) for p in source.paths)
    if text_column not in ds.column_names:
        raise BigseqError(f"{source.spec}: no column '{text_column}' (columns: {', '.join(ds.column_names)}); "
                          "name the text column with --text-column")
    return ds, text_column, 0


def _pick_split(loaded, source: Source, split: str) -> datasets.Dataset:
    if isinstance(loaded, datasets.Dataset):
        return loaded
    names = list(loaded.keys())
    wanted = [n for n in _SPLIT_NAMES.get(split, (split,)) if n in names]
    if wanted:
        return loaded[wanted[0]]
    if len(names) == 1:
        return loaded[names[0]]
    raise BigseqError(f"{source.spec}: a saved DatasetDict with splits {names} and none for '{split}'; "
                      "save the split you want on its own, or name it train/validation/test")
