"""Weights written one shard at a time (``ShardWriter``), in the layout transformers writes.

Tensors fill one shard up to ``max_shard_bytes``; the full shard is saved (with
``metadata={"format": "pt"}``) and dropped before the next one starts, so a conversion holds
about one shard. The result is ``model.safetensors`` when everything fits one shard, otherwise
``model-0000i-of-0000N.safetensors`` plus ``model.safetensors.index.json`` with its
``"metadata"`` key (transformers 5 raises KeyError('metadata') without it).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Callable

import torch

from bigseq.atomic_files import write_json
from bigseq.checkpoint.hf_read import SAFETENSORS, SAFETENSORS_INDEX
from bigseq.errors import BigseqError

DEFAULT_SHARD_SIZE = "5GB"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str | int) -> int:
    """'5GB' -> 5 * 10**9 bytes (decimal units, as transformers reads them; 'GiB' is 2**30); ints pass."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if match is None or match.group(2).upper() not in _UNITS or float(match.group(1)) <= 0:
        raise BigseqError(f"--max-shard-size {text!r} is not a size; write it like 5GB, 200MB or 2GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_dtype(name: str) -> torch.dtype | None:
    """'auto' -> None (every tensor keeps the dtype it has); 'bf16'/'fp16'/'fp32' -> that dtype."""
    if name == "auto":
        return None
    if name not in DTYPES:
        raise BigseqError(f"--dtype {name!r} is not known; use auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> 'bfloat16', as config.json's dtype / torch_dtype spell it."""
    return str(dtype).removeprefix("torch.")


class ShardWriter:
    """Tensors in, safetensors shards out; at most one shard is held in memory."""

    def __init__(self, folder: str, max_shard_bytes: int, dtype: torch.dtype | None = None,
                 after_flush: Callable[[], None] = lambda: None):
        """after_flush: called once a shard is saved and dropped (the reader's ``release``)."""
        self.folder, self.max_shard_bytes, self.dtype, self.after_flush = folder, max_shard_bytes, dtype, after_flush
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.shards: list[list[str]] = []
        self.bytes_by_dtype: Counter[torch.dtype] = Counter()

    def add(self, names: tuple[str, ...] | list[str], tensors: tuple[torch.Tensor, ...]) -> None:
        for name, tensor in zip(names, tensors, strict=True):
            if self.dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(self.dtype)
            tensor = tensor.detach().to("cpu").contiguous()
            size = tensor.numel() * tensor.element_size()
            if self.pending and self.pending_bytes + size > self.max_shard_bytes:
                self._flush()
            self.pending[name] = tensor
            self.pending_bytes += size
            self.bytes_by_dtype[tensor.dtype] += size

    def main_dtype(self) -> torch.dtype:
        """The dtype of most of the bytes added so far (fp32 before any)."""
        return self.bytes_by_dtype.most_common(1)[0][0] if self.bytes_by_dtype else torch.float32

    def _part(self, i: int) -> str:
        return os.path.join(self.folder, f".part-{i:05d}.safetensors")

    def _flush(self) -> None:
        from safetensors.torch import save_file
        save_file(self.pending, self._part(len(self.shards)), metadata={"format": "pt"})
        self.shards.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0
        self.after_flush()

    def close(self) -> torch.dtype:
        """Name the shards as transformers does and write the index; -> the dtype of most of the bytes."""
        if self.pending or not self.shards:
            self._flush()
        if len(self.shards) == 1:
            os.replace(self._part(0), os.path.join(self.folder, SAFETENSORS))
        else:
            weight_map = {}
            for i, names in enumerate(self.shards):
                file = f"model-{i + 1:05d}-of-{len(self.shards):05d}.safetensors"
                os.replace(self._part(i), os.path.join(self.folder, file))
                weight_map.update(dict.fromkeys(names, file))
            write_json(os.path.join(self.folder, SAFETENSORS_INDEX), {
                "metadata": {"total_size": sum(self.bytes_by_dtype.values())}, "weight_map": weight_map})
        return self.main_dtype()
