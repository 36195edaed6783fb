"""Memory-mapped token datasets: ``PREFIX.bin`` (the tokens) + ``PREFIX.idx`` (the index).

The index is the "MMIDIDX" format shared by fairseq and Megatron (little endian)::

    b"MMIDIDX\\x00\\x00"  uint64 version=1  uint8 dtype code  uint64 N (sequences)
    [uint64 D (len(doc_idx))]           Megatron layout only
    int32 sizes[N]  int64 byte pointers[N]
    [int64 doc_idx[D]]                  Megatron layout only (0, ..., N)

fairseq writes the layout without document indices, Megatron the one with them;
the two are told apart by the file length (they can never both match). bigseq
writes the Megatron layout. The reader maps both files and never loads tokens.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import torch

from bigseq.errors import BigseqError

MAGIC = b"MMIDIDX\x00\x00"
_HEADER_BYTES = len(MAGIC) + 8 + 1 + 8  # magic, version, dtype code, sequence count
# fairseq's codes; 6 and 7 are float types (fairseq and Megatron disagree on 7), never token ids
CODE_TO_DTYPE = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64,
                 8: np.uint16, 9: np.uint32, 10: np.uint64}
DTYPE_TO_CODE = {np.dtype(v): k for k, v in CODE_TO_DTYPE.items()}


def index_path(prefix: str) -> str:
    return prefix + ".idx"


def data_path(prefix: str) -> str:
    return prefix + ".bin"


def exists(prefix: str) -> bool:
    return os.path.exists(index_path(prefix)) and os.path.exists(data_path(prefix))


def best_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (fairseq's threshold), else int32."""
    return np.dtype(np.uint16 if vocab_size < 65500 else np.int32)


def fairseq_dtype(vocab_size: int) -> np.dtype:
    """fairseq-preprocess's ``best_fitting_int_dtype(len(dict))``: uint16, uint32, else int64."""
    if vocab_size < 65500:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32 if vocab_size < 2**32 - 1 else np.int64)


def _corrupt(path: str, what: str) -> BigseqError:
    return BigseqError(f"{path}: {what}; the file is truncated or corrupt, re-run `bigseq preprocess` to rewrite it")


def _memmap(path: str, dtype, offset: int, count: int) -> np.ndarray:
    if count == 0:  # numpy cannot map zero bytes
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))


class MMapIndexedDataset:
    """Read-only view of a .bin/.idx pair; ``ds[i]`` is sequence i as an int64 tensor."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        idx_file, bin_file = index_path(prefix), data_path(prefix)
        for path in (idx_file, bin_file):
            if not os.path.exists(path):
                raise BigseqError(f"{path}: file not found; run `bigseq preprocess` to write it")
        idx_bytes = os.path.getsize(idx_file)
        with open(idx_file, "rb") as f:
            header = f.read(_HEADER_BYTES + 8)
        if len(header) < _HEADER_BYTES:
            raise _corrupt(idx_file, f"only {idx_bytes} bytes, shorter than the index header")
        if header[:len(MAGIC)] != MAGIC:
            raise _corrupt(idx_file, "not an mmap token index (bad magic bytes)")
        (version,) = struct.unpack("<Q", header[9:17])
        if version != 1:
            raise _corrupt(idx_file, f"index version {version}, expected 1")
        code = header[17]
        if code not in CODE_TO_DTYPE:
            raise _corrupt(idx_file, f"dtype code {code} is not an integer token type")
        self.dtype = np.dtype(CODE_TO_DTYPE[code])
        (n,) = struct.unpack("<Q", header[18:26])

        arrays_offset = _HEADER_BYTES
        if idx_bytes == _HEADER_BYTES + 12 * n:  # fairseq layout: every sequence is a document
            num_doc_idx = None
        elif len(header) >= _HEADER_BYTES + 8:  # Megatron layout
            (num_doc_idx,) = struct.unpack("<Q", header[26:34])
            arrays_offset += 8
            if idx_bytes != arrays_offset + 12 * n + 8 * num_doc_idx:
                raise _corrupt(idx_file, f"{idx_bytes} bytes do not match the {n} sequences its header announces")
        else:
            raise _corrupt(idx_file, f"{idx_bytes} bytes do not match the {n} sequences its header announces")

        self.sizes = _memmap(idx_file, np.int32, arrays_offset, n)
        self.pointers = _memmap(idx_file, np.int64, arrays_offset + 4 * n, n)
        if num_doc_idx is None:
            self.doc_idx = np.arange(n + 1, dtype=np.int64)
        else:
            self.doc_idx = _memmap(idx_file, np.int64, arrays_offset + 12 * n, num_doc_idx)
        self._check(idx_file, bin_file)
        self.tokens = _memmap(bin_file, self.dtype, 0, self.num_tokens)
        """All sequences back to back: sequence i is tokens[offsets[i] : offsets[i] + sizes[i]]."""
        self.offsets = self.pointers // self.dtype.itemsize

    def _check(self, idx_file: str, bin_file: str) -> None:
        """Sizes, pointers and the .bin length must agree (a truncated copy is the usual culprit)."""
        itemsize = self.dtype.itemsize
        bin_bytes = os.path.getsize(bin_file)
        n = len(self.sizes)
        if n and self.sizes.min() < 0:
            raise _corrupt(idx_file, "negative sequence sizes")
        sizes64 = self.sizes.astype(np.int64)
        expected = np.zeros(n, dtype=np.int64)
        np.cumsum(sizes64[:-1] * itemsize, out=expected[1:])
        if not np.array_equal(self.pointers, expected):
            raise _corrupt(idx_file, "sequence pointers do not follow the sequence sizes")
        described = int(sizes64.sum()) * itemsize
        if described != bin_bytes:
            raise _corrupt(bin_file, f"{bin_bytes} bytes but {idx_file} describes {described}")
        d = self.doc_idx
        if len(d) == 0 or d[0] != 0 or d[-1] != n or np.any(np.diff(d) < 0):
            raise _corrupt(idx_file, "document index is not an increasing list from 0 to the sequence count")
        self.num_tokens = described // itemsize

    def __getstate__(self):  # pickle the path, not the mapped arrays
        return self.prefix

    def __setstate__(self, prefix: str):
        self.__init__(prefix)

    def __len__(self) -> int:
        return len(self.sizes)

    def get(self, i: int) -> np.ndarray:
        """Sequence i in its stored dtype (a view into the mapped file)."""
        start = int(self.offsets[i])
        return self.tokens[start:start + int(self.sizes[i])]

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.get(i).astype(np.int64))

    @property
    def num_docs(self) -> int:
        return len(self.doc_idx) - 1


class _IntBuffer:
    """A growing int64 array; single appends are batched into numpy chunks (compact at 10^8 entries)."""

    def __init__(self, *initial: int):
        self._chunks: list[np.ndarray] = []
        self._pending: list[int] = list(initial)
        self.last = initial[-1] if initial else None

    def append(self, value: int) -> None:
        self._pending.append(value)
        self.last = value
        if len(self._pending) >= 1 << 16:
            self._flush()

    def extend(self, values: np.ndarray) -> None:
        if len(values):
            self._flush()
            self._chunks.append(np.array(values, dtype=np.int64))  # a copy: the caller may reuse its buffer
            self.last = int(values[-1])

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(np.array(self._pending, dtype=np.int64))
            self._pending = []

    def array(self) -> np.ndarray:
        self._flush()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int64)


class MMapIndexedDatasetBuilder:
    """Streams sequences to ``PREFIX.bin``; ``finalize()`` writes the index and publishes both.

    Both files are written under temporary names and moved into place together,
    so an interrupted run never leaves a half-written pair behind.
    """

    def __init__(self, prefix: str, dtype, *, layout: str = "megatron"):
        if layout not in ("megatron", "fairseq"):
            raise ValueError(f"layout must be 'megatron' or 'fairseq', got {layout!r}")
        self.prefix, self.dtype, self.layout = prefix, np.dtype(dtype), layout
        if self.dtype not in DTYPE_TO_CODE:
            raise ValueError(f"unsupported token dtype {self.dtype}")
        self._tmp_bin, self._tmp_idx = data_path(prefix) + ".tmp", index_path(prefix) + ".tmp"
        self._bin = open(self._tmp_bin, "wb")
        self._sizes = _IntBuffer()
        self._doc_idx = _IntBuffer(0)
        self._count = 0

    def _check_range(self, tokens: np.ndarray) -> None:
        if tokens.size and tokens.dtype != self.dtype:
            info = np.iinfo(self.dtype)
            if tokens.min() < info.min or tokens.max() > info.max:
                raise ValueError(f"token ids outside the range of {self.dtype}")

    def add_item(self, tokens) -> None:
        """Append one sequence (any 1-D integer array or tensor)."""
        tokens = np.asarray(tokens.numpy() if isinstance(tokens, torch.Tensor) else tokens)
        self._check_range(tokens)
        self._bin.write(tokens.astype(self.dtype, copy=False).tobytes(order="C"))
        self._sizes.append(tokens.size)
        self._count += 1

    def add_items(self, flat_tokens: np.ndarray, sizes: np.ndarray, *, documents: bool = True) -> None:
        """Append many sequences at once (``flat_tokens`` = them concatenated); each is a document if asked."""
        flat_tokens, sizes = np.asarray(flat_tokens), np.asarray(sizes, dtype=np.int64)
        if int(sizes.sum()) != flat_tokens.size:
            raise ValueError("sizes do not add up to the number of tokens")
        self._check_range(flat_tokens)
        if documents:
            self.end_document()
        self._bin.write(flat_tokens.astype(self.dtype, copy=False).tobytes(order="C"))
        self._sizes.extend(sizes)
        if documents:
            self._doc_idx.extend(np.arange(self._count + 1, self._count + len(sizes) + 1))
        self._count += len(sizes)

    def end_document(self) -> None:
        """Mark the sequences added since the last call as one document."""
        if self._doc_idx.last != self._count:
            self._doc_idx.append(self._count)

    def finalize(self) -> None:
        self.end_document()
        self._bin.close()
        sizes, doc_idx = self._sizes.array(), self._doc_idx.array()
        if len(sizes) and sizes.max() >= 2**31:
            raise ValueError("a sequence of 2^31 tokens or more does not fit the index format")
        pointers = np.zeros(len(sizes), dtype=np.int64)
        np.cumsum(sizes[:-1] * self.dtype.itemsize, out=pointers[1:])
        with open(self._tmp_idx, "wb") as f:
            f.write(MAGIC + struct.pack("<Q", 1) + struct.pack("<B", DTYPE_TO_CODE[self.dtype]))
            f.write(struct.pack("<Q", len(sizes)))
            if self.layout == "megatron":
                f.write(struct.pack("<Q", len(doc_idx)))
            f.write(sizes.astype("<i4").tobytes())
            f.write(pointers.astype("<i8").tobytes())
            if self.layout == "megatron":
                f.write(doc_idx.astype("<i8").tobytes())
        os.replace(self._tmp_bin, data_path(self.prefix))
        os.replace(self._tmp_idx, index_path(self.prefix))

    def abort(self) -> None:
        """Drop the temporary files (call on failure)."""
        self._bin.close()
        for path in (self._tmp_bin, self._tmp_idx):
            if os.path.exists(path):
                os.remove(path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.finalize()
        else:
            self.abort()
