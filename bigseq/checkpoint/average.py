"""`bigseq average-checkpoints`: the mean of several checkpoints' weights, as one consolidated folder.

Inputs are training checkpoints of any ZeRO stage, pipeline or universal (each consolidated first)
or consolidated folders, all of one architecture. A save dir with ``--num-update-checkpoints N``
stands for its last N checkpoints (at most ``--checkpoint-upper-bound``). Every tensor is summed in
float64 from a fresh buffer and divided once, so N copies of one checkpoint average to it bit for
bit, and names that share one tensor (tied embeddings) are each averaged from their own copies:
fairseq's in-place average once counted a tied embedding twice (fairseq#743). Integer tensors
floor-divide, as fairseq does. Keys, shapes and model configs must agree, or nothing is written.
The output is what ``to-safetensors`` writes: ``generate``, ``validate``, ``--finetune-from-model``
and ``to-hf`` take it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re

import torch

from bigseq.checkpoint import files, hf_files
from bigseq.checkpoint.consolidated import Staging, write_info
from bigseq.checkpoint.convert import open_weights
from bigseq.checkpoint.hf_write import ShardWriter, parse_dtype, parse_size
from bigseq.errors import BigseqError

_TAG = re.compile(r"^checkpoint_(\d+)$")


def select_inputs(inputs: list[str], num_update_checkpoints: int | None, upper_bound: int | None) -> list[str]:
    """The checkpoints to average: the paths given, or a save dir's last N by update number."""
    if not inputs:
        raise BigseqError("average-checkpoints: pass --inputs PATH [PATH ...]")
    if num_update_checkpoints is None:
        if len(inputs) < 2:
            raise BigseqError(f"average-checkpoints: one input ({inputs[0]}); pass several checkpoints, or a save "
                              f"dir with --num-update-checkpoints N")
        return inputs
    if len(inputs) != 1 or not os.path.isdir(inputs[0]):
        raise BigseqError("--num-update-checkpoints N takes one save dir in --inputs")
    save_dir = inputs[0]
    tags = sorted((int(m.group(1)), name) for name in os.listdir(save_dir) if (m := _TAG.match(name))
                  and os.path.isfile(os.path.join(save_dir, name, files.META_FILE)))
    if upper_bound is not None:
        tags = [t for t in tags if t[0] <= upper_bound]
    if num_update_checkpoints < 1 or len(tags) < num_update_checkpoints:
        raise BigseqError(f"--num-update-checkpoints {num_update_checkpoints}: {save_dir} holds {len(tags)} complete "
                          f"checkpoint(s){' up to update ' + str(upper_bound) if upper_bound is not None else ''}; "
                          f"ask for at most {len(tags)} (raise --keep-last-checkpoints when training to keep more)")
    return [os.path.join(save_dir, name) for _, name in tags[-num_update_checkpoints:]]


def average_checkpoints(paths: list[str], out_dir: str, *, dtype: str = "auto", max_shard_size: str = "5GB",
                        data: str | None = None) -> str:
    """Average ``paths`` into the consolidated folder ``out_dir``."""
    cast, shard_bytes, staging = parse_dtype(dtype), parse_size(max_shard_size), Staging(out_dir)
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(open_weights(p, data)) for p in paths]
        first = sources[0]
        names = first.tensors.names()
        for path, w in zip(paths[1:], sources[1:]):
            _check_same_model(paths[0], first, path, w)
        with staging as tmp:
            writer = ShardWriter(tmp, shard_bytes, cast)
            for name in names:
                writer.add((name,), (_mean([w.tensors.get(name) for w in sources], name, paths),))
            saved = writer.close()
            hf_files.copy_artifacts(first.artifacts_dir, tmp)
            last = sources[-1].info
            write_info(tmp, first.family.name, first.cfg, dtype=saved,
                       **{**last, "averaged_from": [os.path.abspath(p) for p in paths]})
    return out_dir


def _check_same_model(path_a: str, a, path_b: str, b) -> None:
    if a.family.name != b.family.name or dataclasses.asdict(a.cfg) != dataclasses.asdict(b.cfg):
        diff = next((k for k, v in dataclasses.asdict(a.cfg).items() if dataclasses.asdict(b.cfg).get(k) != v),
                    "model family") if a.family.name == b.family.name else "model family"
        raise BigseqError(f"{path_b} is another model than {path_a} ({diff} differs); average checkpoints of one run")
    names_a, names_b = set(a.tensors.names()), set(b.tensors.names())
    if names_a != names_b:
        odd = sorted(names_a ^ names_b)[:3]
        raise BigseqError(f"{path_b} and {path_a} hold different tensors ({', '.join(odd)}); average checkpoints "
                          f"of one model")


def _mean(tensors: list[torch.Tensor], name: str, paths: list[str]) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise BigseqError(f"'{name}' has shapes {sorted(shapes)} across {', '.join(paths)}; average checkpoints of "
                          f"one model")
    if not tensors[0].is_floating_point():
        total = torch.zeros_like(tensors[0], dtype=torch.int64)
        for t in tensors:
            total += t
        return torch.div(total, len(tensors), rounding_mode="floor").to(tensors[0].dtype)
    total = torch.zeros_like(tensors[0], dtype=torch.float64)
    for t in tensors:
        total += t.to(torch.float64)
    return (total / len(tensors)).to(tensors[0].dtype)
