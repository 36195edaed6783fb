"""mmap .bin/.idx: round trip, the exact byte layout, and clear errors on damaged files."""

import os
import pickle
import struct

import numpy as np
import pytest

from bigseq.data.indexed_dataset import MMapIndexedDataset, MMapIndexedDatasetBuilder, best_dtype
from bigseq.errors import BigseqError

DOCS = [[5, 6, 7, 2], [9, 2], [300, 301, 302, 303, 2]]


def write(prefix, docs=DOCS, dtype=np.uint16, layout="megatron"):
    with MMapIndexedDatasetBuilder(str(prefix), dtype, layout=layout) as b:
        for d in docs:
            b.add_item(np.array(d))
            b.end_document()
    return str(prefix)


@pytest.mark.parametrize("layout", ["megatron", "fairseq"])
def test_round_trip(tmp_path, layout):
    prefix = write(tmp_path / "train", layout=layout)
    ds = MMapIndexedDataset(prefix)
    assert len(ds) == 3 and ds.num_docs == 3 and ds.num_tokens == 11
    assert ds.sizes.tolist() == [4, 2, 5]
    assert ds.doc_idx.tolist() == [0, 1, 2, 3]
    for i, d in enumerate(DOCS):
        assert ds[i].dtype.is_floating_point is False and ds[i].tolist() == d
        assert ds.get(i).tolist() == d
    assert isinstance(ds.tokens, np.memmap)  # mapped, never read into memory
    assert pickle.loads(pickle.dumps(ds))[2].tolist() == DOCS[2]


def test_bulk_add_and_multi_sequence_documents(tmp_path):
    with MMapIndexedDatasetBuilder(str(tmp_path / "x"), np.int32) as b:
        b.add_item([1, 2])
        b.add_item([3])
        b.end_document()  # one document of two sequences
        b.add_items(np.array([4, 5, 6, 70000]), np.array([3, 1]))
    ds = MMapIndexedDataset(str(tmp_path / "x"))
    assert ds.dtype == np.int32
    assert [ds[i].tolist() for i in range(4)] == [[1, 2], [3], [4, 5, 6], [70000]]
    assert ds.doc_idx.tolist() == [0, 2, 3, 4]


def test_best_dtype():
    assert best_dtype(50000) == np.uint16 and best_dtype(65500) == np.int32


def test_megatron_byte_layout(tmp_path):
    prefix = write(tmp_path / "t")
    raw = open(prefix + ".idx", "rb").read()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    version, code, n, ndoc = struct.unpack("<QBQQ", raw[9:34])
    assert (version, code, n, ndoc) == (1, 8, 3, 4)  # 8 = uint16 in fairseq's and Megatron's codes
    sizes = np.frombuffer(raw, np.int32, 3, 34)
    pointers = np.frombuffer(raw, np.int64, 3, 34 + 12)
    doc_idx = np.frombuffer(raw, np.int64, 4, 34 + 36)
    assert sizes.tolist() == [4, 2, 5] and pointers.tolist() == [0, 8, 12] and doc_idx.tolist() == [0, 1, 2, 3]
    assert len(raw) == 34 + 36 + 32
    assert np.fromfile(prefix + ".bin", np.uint16).tolist() == sum(DOCS, [])


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with MMapIndexedDatasetBuilder(str(tmp_path / "t"), np.uint16) as b:
            b.add_item([1, 2, 3])
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def _damage(path, fn):
    data = bytearray(open(path, "rb").read())
    open(path, "wb").write(bytes(fn(data)))


@pytest.mark.parametrize("target,fn,msg", [
    ("idx", lambda d: b"NOTANIDX!" + d[9:], "bad magic"),
    ("idx", lambda d: d[:20], "shorter than the index header"),
    ("idx", lambda d: d[:-5], "do not match"),
    ("bin", lambda d: d[:-2], "describes"),
    ("bin", lambda d: d + b"\x00\x00", "describes"),
    ("idx", lambda d: d[:34 + 12] + struct.pack("<q", 10**6) + d[34 + 20:], "pointers"),
    ("idx", lambda d: d[:9] + struct.pack("<Q", 2) + d[17:], "version"),
    ("idx", lambda d: d[:17] + bytes([6]) + d[18:], "not an integer token type"),
])
def test_corrupt_files_raise(tmp_path, target, fn, msg):
    prefix = write(tmp_path / "train")
    path = f"{prefix}.{target}"
    _damage(path, fn)
    with pytest.raises(BigseqError) as e:
        MMapIndexedDataset(prefix)
    assert msg in str(e.value) and path in str(e.value) and "bigseq preprocess" in str(e.value)


def test_missing_bin(tmp_path):
    prefix = write(tmp_path / "train")
    os.remove(prefix + ".bin")
    with pytest.raises(BigseqError, match="train.bin: file not found"):
        MMapIndexedDataset(prefix)
