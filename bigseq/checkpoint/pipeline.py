"""Checkpoints across pipeline-parallel sizes.

DeepSpeed names a PipelineModule's parameters by layer index ('3.attn.q_proj.weight',
'tied_modules.embed.tokens.weight'), the plain model by module path
('layers.1.attn.q_proj.weight'). Universal checkpoints keep one folder per parameter,
so bigseq writes them with the plain names (renamed at conversion) and a pipeline
run reads them through the same mapping: any pipeline size, or none, loads any.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import torch

from bigseq.errors import BigseqError

PREFIXES_KEY = "pipeline_prefixes"  # in bigseq_meta.json of a pipeline checkpoint
PLAIN_NAMES_KEY = "plain_param_names"  # in bigseq_meta.json of a universal checkpoint


def pipeline_size(meta: dict) -> int:
    return int(meta["cfg"].get("distributed", {}).get("pipeline_parallel_size", 1))


def run_pipeline_size(trainer) -> int:
    return trainer.num_stages


def check_pipeline_size(meta: dict, trainer, where: str) -> None:
    """Refuse resuming across pipeline sizes unless from a universal checkpoint in plain names."""
    saved, now = pipeline_size(meta), run_pipeline_size(trainer)
    if meta.get("universal"):
        if saved > 1 and not meta.get(PLAIN_NAMES_KEY) and saved != now:
            raise BigseqError(f"universal checkpoint {where} keeps the parameter names of its "
                              f"{saved}-stage pipeline; remove it and convert {meta.get('source_tag')} again "
                              f"with `bigseq convert universal` to resume with --pipeline-parallel-size {now}")
        return
    if saved == now:
        return
    if meta.get("zero_stage", 0) == 0:
        fix = (f"resume with --pipeline-parallel-size {saved}; changing it goes through a universal checkpoint, "
               f"which needs a run trained with --zero-stage 1")
    else:
        fix = (f"resume with --pipeline-parallel-size {saved}, or run `bigseq convert universal {where}` and "
               f"resume (the universal checkpoint is picked up automatically)")
    raise BigseqError(f"checkpoint {where} was saved with --pipeline-parallel-size {saved}, this run has "
                      f"--pipeline-parallel-size {now}; {fix}")


def rename_to_plain(universal_dir: str, meta: dict, where: str) -> None:
    """ds_to_universal's zero/<pipeline name>/ folders -> zero/<plain name>/ (a tied module is one folder)."""
    from bigseq.distributed.pipeline import plain_name
    prefixes = meta.get(PREFIXES_KEY)
    if prefixes is None:
        raise BigseqError(f"{where} is a pipeline checkpoint without its layer names "
                          f"(saved by an older bigseq); resume it with the same --pipeline-parallel-size")
    zero = os.path.join(universal_dir, "zero")
    for name in os.listdir(zero):
        path = os.path.join(zero, name)
        if not os.path.isdir(path):
            continue  # optimizer_state.pt: the optimizer's global state
        target = os.path.join(zero, plain_name(name, prefixes))
        if os.path.exists(target):  # a tied module's second stage: same fp32 weights and moments
            shutil.rmtree(path)
        else:
            os.rename(path, target)


@contextlib.contextmanager
def plain_param_names(trainer):
    """While DeepSpeed loads a universal checkpoint: the ZeRO optimizer's parameter -> folder name in plain names."""
    from bigseq.distributed.pipeline import layer_prefixes, plain_name
    optimizer = trainer.engine.optimizer
    prefixes = layer_prefixes(trainer.engine.module.bigseq_layers)
    names = optimizer.param_names
    optimizer.param_names = {p: plain_name(n, prefixes) for p, n in names.items()}
    try:
        yield
    finally:
        optimizer.param_names = names


def load_plain_state(trainer, state: dict[str, torch.Tensor], where: str) -> None:
    """A plain model's state dict into this run's pipeline stage (each stage takes its layers' tensors)."""
    from bigseq.distributed.pipeline import layer_prefixes, plain_name
    module = trainer.engine.module
    prefixes = layer_prefixes(module.bigseq_layers)
    wanted = {name: plain_name(name, prefixes) for name in module.state_dict()}
    missing = [plain for plain in wanted.values() if plain not in state]
    if missing:
        raise BigseqError(f"{where} does not match the model (missing {missing[:3]}); use the --arch it was "
                          f"trained or converted with")
    module.load_state_dict({name: state[plain] for name, plain in wanted.items()}, strict=True)
