"""Weights read one tensor at a time (``TensorReader``), so converting a model never holds all of it.

A folder's ``model.safetensors``, its sharded form (``model.safetensors.index.json``) or
``pytorch_model.bin`` (sharded or not, with ``pytorch_model.bin.index.json``). A safetensors
tensor is read straight into a buffer of its own: its header entry gives the byte range (the format
is an 8-byte header length, a JSON header, then the data). safetensors' own ``safe_open.get_tensor``
hands out tensors backed by a mapping of the whole file instead, and every page read through such
a mapping stays in the process while any tensor from the file is alive: converting a 517 MiB
checkpoint with 200 MiB shards then peaked at 398 MiB instead of about one shard
(benchmarks/hf_convert_memory.py). A ``.bin`` shard can only be memory-mapped
(``torch.load(mmap=True, weights_only=True)``); ``release()`` drops the mapping, and the writer
calls it after each shard it saves.
"""

from __future__ import annotations

import json
import os

import torch

from bigseq.errors import BigseqError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = SAFETENSORS + ".index.json"
BIN = "pytorch_model.bin"
BIN_INDEX = BIN + ".index.json"
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def _weight_files(folder: str) -> dict[str, str]:
    """Tensor name -> the file holding it, from an index or a single file's own keys; safetensors first, as
    transformers prefers them."""
    for name in (SAFETENSORS_INDEX, SAFETENSORS, BIN_INDEX, BIN):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if name == SAFETENSORS:
            return dict.fromkeys(_SafetensorsFile(path).entries, name)
        if name == BIN:
            return dict.fromkeys(torch.load(path, map_location="cpu", weights_only=True, mmap=True), name)
        with open(path) as f:
            weight_map = json.load(f)["weight_map"]
        missing = sorted({f for f in weight_map.values() if not os.path.isfile(os.path.join(folder, f))})
        if missing:
            raise BigseqError(f"{path} names shards that are not in the folder ({', '.join(missing[:3])}); "
                              f"download the missing files")
        return weight_map
    raise BigseqError(f"{folder} has no {SAFETENSORS}, {SAFETENSORS_INDEX}, {BIN} or {BIN_INDEX}; "
                      f"save the model with transformers' save_pretrained")


class _SafetensorsFile:
    """One safetensors file: its header, and each tensor read by its byte range into a fresh buffer."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as f:
                length = int.from_bytes(f.read(8), "little")
                self.entries = json.loads(f.read(length))
        except (ValueError, OSError) as e:
            raise BigseqError(f"{path} is not a readable safetensors file ({e}); download it again") from None
        self.entries.pop("__metadata__", None)
        self.data_start = 8 + length

    def get(self, name: str) -> torch.Tensor:
        entry = self.entries[name]
        if entry["dtype"] not in _DTYPES:  # a rare dtype: safetensors' reader, copied out of its mapping
            from safetensors import safe_open
            with safe_open(self.path, framework="pt") as f:
                return f.get_tensor(name).clone()
        begin, end = entry["data_offsets"]
        tensor = torch.empty(entry["shape"], dtype=_DTYPES[entry["dtype"]])
        buffer = memoryview(tensor.view(-1).view(torch.uint8).numpy()) if tensor.numel() else memoryview(b"")
        if len(buffer) != end - begin:
            raise BigseqError(f"{self.path}: '{name}' holds {end - begin} bytes, not {len(buffer)}; download it again")
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.data_start + begin)
            done = 0
            while done < len(buffer):
                n = f.readinto(buffer[done:])
                if not n:
                    raise BigseqError(f"{self.path} ends inside '{name}'; the file is truncated: download it again")
                done += n
        return tensor


class TensorReader:
    """The tensors of a model folder by name, read one at a time (use as a context manager)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.file_of = _weight_files(folder)
        self._safetensors: dict[str, _SafetensorsFile] = {}  # parsed headers by file name
        self._bin: tuple[str, dict] | None = None  # the one memory-mapped .bin shard in use

    def names(self) -> list[str]:
        return list(self.file_of)

    def get(self, name: str) -> torch.Tensor:
        file = self.file_of[name]
        path = os.path.join(self.folder, file)
        if file.endswith(".safetensors"):
            if file not in self._safetensors:
                self._safetensors[file] = _SafetensorsFile(path)
            return self._safetensors[file].get(name)
        if self._bin is None or self._bin[0] != file:
            self._bin = None  # drop the previous shard's mapping before mapping the next
            self._bin = (file, torch.load(path, map_location="cpu", weights_only=True, mmap=True))
        return self._bin[1][name]

    def release(self) -> None:
        """Drop the .bin mapping: its pages leave the process once no tensor read from it is alive."""
        self._bin = None

    def __enter__(self) -> "TensorReader":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
