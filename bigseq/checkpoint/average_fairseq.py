"""`bigseq average-checkpoints` over fairseq ``.pt`` files: fairseq's scripts/average_checkpoints.py, safely.

Inputs are fairseq checkpoints (read by fairseq_pickle, no fairseq import), given as files or as one
directory with ``--num-epoch-checkpoints N`` (fairseq's ``checkpoint(\\d+)\\.pt``) or
``--num-update-checkpoints N`` (``checkpoint_\\d+_(\\d+)\\.pt``), the last N by number at most
``--checkpoint-upper-bound``. The output is a ``.pt`` whose every field but ``model`` is the first
input's, as fairseq writes it. Each tensor is summed in float64 into a fresh buffer per key, so a tied
embedding (three keys, one tensor under --share-all-embeddings) is averaged once per key from its own
copies and never counted twice (fairseq#743), then divided once and cast back (fp16 stays fp16;
integer tensors floor-divide). Keys that share one tensor in the first input share the result.
Different key sets or shapes are refused before anything is written.
"""

from __future__ import annotations

import os
import re

import torch

from bigseq.checkpoint.fairseq_pickle import load_fairseq_checkpoint
from bigseq.errors import BigseqError

EPOCH_PATTERN = re.compile(r"^checkpoint(\d+)\.pt$")
UPDATE_PATTERN = re.compile(r"^checkpoint_\d+_(\d+)\.pt$")


def is_fairseq_file(path: str) -> bool:
    return path.endswith(".pt") and os.path.isfile(path)


def last_n_checkpoints(folder: str, n: int, *, by_update: bool, upper_bound: int | None) -> list[str]:
    """fairseq's last_n_checkpoints: the n highest-numbered files (epoch or update number), newest first."""
    pattern = UPDATE_PATTERN if by_update else EPOCH_PATTERN
    found = sorted(((int(m.group(1)), name) for name in os.listdir(folder) if (m := pattern.match(name))
                    and (upper_bound is None or int(m.group(1)) <= upper_bound)), reverse=True)
    flag = "--num-update-checkpoints" if by_update else "--num-epoch-checkpoints"
    if n < 1 or len(found) < n:
        raise BigseqError(f"{flag} {n}: {folder} holds {len(found)} file(s) named like {pattern.pattern}"
                          f"{' up to ' + str(upper_bound) if upper_bound is not None else ''}; ask for at most "
                          f"{len(found)}")
    return [os.path.join(folder, name) for _, name in found[:n]]


def average_fairseq(paths: list[str], out_file: str) -> str:
    if not out_file.endswith(".pt"):
        raise BigseqError(f"--output {out_file}: averaging fairseq checkpoints writes a fairseq .pt file; "
                          f"name it *.pt")
    if os.path.exists(out_file):
        raise BigseqError(f"{out_file} exists; choose a new output file")
    first = load_fairseq_checkpoint(paths[0])
    model = first["model"]
    sums = {k: torch.zeros_like(v, dtype=torch.float64 if v.is_floating_point() else torch.int64)
            for k, v in model.items()}
    for i, path in enumerate(paths):
        state = model if i == 0 else load_fairseq_checkpoint(path)["model"]
        _check_same_keys(paths[0], model, path, state)
        for k, v in state.items():
            sums[k] += v.to(sums[k].dtype)  # a fresh buffer per key: a tied tensor is not added twice to one
        del state
    first["model"] = _tie_like(model, {k: _divide(s, len(paths), model[k].dtype) for k, s in sums.items()})
    os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
    torch.save(first, out_file + ".partial")
    os.replace(out_file + ".partial", out_file)
    return out_file


def _check_same_keys(path_a: str, a: dict, path_b: str, b: dict) -> None:
    if set(a) != set(b):
        odd = sorted(set(a) ^ set(b))[:3]
        raise BigseqError(f"{path_b} and {path_a} hold different model keys ({', '.join(odd)}); average "
                          f"checkpoints of one model")
    for k, v in b.items():
        if not isinstance(v, torch.Tensor) or v.shape != a[k].shape:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise BigseqError(f"'{k}' is {shape} in {path_b} but {tuple(a[k].shape)} in {path_a}; average "
                              f"checkpoints of one model")


def _divide(total: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    if total.is_floating_point():
        return (total / n).to(dtype)
    return torch.div(total, n, rounding_mode="floor").to(dtype)


def _tie_like(reference: dict, averaged: dict) -> dict:
    """Keys that are one tensor in ``reference`` become one tensor again (their averages are equal)."""
    by_storage: dict[tuple, str] = {}
    for k, v in reference.items():
        ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()))
        if ident in by_storage:
            averaged[k] = averaged[by_storage[ident]]
        else:
            by_storage[ident] = k
    return averaged
