"""Save and resume a training run.

Layout = DeepSpeed's (save_dir/<tag>/..., save_dir/latest) + bigseq's client
state (config, updates, iterator position, every rank's RNG state, universal
checkpoint info) and a small `bigseq_meta.json` per tag, written LAST: a tag
without it is partial. `latest` is replaced atomically only after every rank
finished writing, so a crash mid-save resumes from the previous checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import time

import torch.distributed as dist
from deepspeed.checkpoint.constants import PIPELINE_REPLICATED_PARAMETER_PATTERNS, UNIVERSAL_CHECKPOINT_INFO

from bigseq.atomic_files import atomic_write_text, write_json
from bigseq.checkpoint import files, pipeline, universal
from bigseq.checkpoint.compat import check_compatible
from bigseq.checkpoint.rng import gather_rng_states, reseed, set_rng_state
from bigseq.config.train_config import train_config_to_dict
from bigseq.errors import BigseqError

_TAG_RE = re.compile(r"^checkpoint_(\d+)$")


def _barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def save(trainer, save_dir: str, extra_state: dict) -> str:
    """Collective: every rank calls it. Returns the tag written."""
    env = trainer.env
    tag = f"checkpoint_{trainer.num_updates}"
    cfg_dict = train_config_to_dict(trainer.cfg)
    client_state = {
        "bigseq": {
            **extra_state,
            "num_updates": trainer.num_updates,
            "skipped_nonfinite": trainer.skipped_nonfinite,
            "skipped_overflow": trainer.skipped_overflow,
            "rng": gather_rng_states(env.world_size),
            "world_size": env.world_size,
            "cfg": cfg_dict,
        },
        UNIVERSAL_CHECKPOINT_INFO: universal_info(trainer.engine.module),
    }
    trainer.engine.save_checkpoint(save_dir, tag=tag, client_state=client_state, save_latest=False)
    _barrier(env.world_size)
    # test hook (tests/e2e/test_crash_during_save.py): wait to be killed with the tag's files but no meta/`latest`
    if os.environ.get("BIGSEQ_TEST_PAUSE_AFTER_SAVE_FILES") == tag:
        open(os.path.join(save_dir, f"{tag}.paused"), "w").close()
        time.sleep(3600)
    if env.is_main:
        meta = {"tag": tag, "num_updates": trainer.num_updates, "world_size": env.world_size,
                "zero_stage": trainer.engine.zero_optimization_stage(), "vocab_size": trainer.task.vocab_size,
                "names": trainer.cfg.names, "cfg": cfg_dict}
        if trainer.num_stages > 1:  # universal conversion renames the pipeline's parameters by these
            from bigseq.distributed.pipeline import layer_prefixes
            meta[pipeline.PREFIXES_KEY] = layer_prefixes(trainer.engine.module.bigseq_layers)
        write_json(os.path.join(save_dir, tag, files.META_FILE), meta)
        atomic_write_text(os.path.join(save_dir, "latest"), tag)
        prune(save_dir, trainer.cfg.checkpoint.keep_last_checkpoints, keep=tag)
    _barrier(env.world_size)
    return tag


def universal_info(module) -> dict:
    """The conversion schema ds_to_universal reads: bigseq's keys merged into the one AutoTP attached to the
    model (which parameters are sharded by rows or columns, which replicated). client_state replaces the
    engine's copy, so sending bigseq's alone would make the conversion concatenate replicated weights."""
    info = dict(getattr(module, UNIVERSAL_CHECKPOINT_INFO, None) or {})
    info.setdefault("universal_checkpoint_version", 0.2)
    # a tied module is on the first and the last stage: ds_to_universal extracts it once
    info.setdefault(PIPELINE_REPLICATED_PARAMETER_PATTERNS, [r"tied_modules\."])
    return info


def prune(save_dir: str, keep_last: int, keep: str) -> None:
    if keep_last < 0:
        return
    tags = sorted((int(m.group(1)), name) for name in os.listdir(save_dir) if (m := _TAG_RE.match(name)))
    for _, name in tags[:-keep_last] if keep_last > 0 else tags:
        if name != keep:
            shutil.rmtree(os.path.join(save_dir, name), ignore_errors=True)


def load(trainer, save_dir: str) -> dict | None:
    """Resume from save_dir/latest if there is one; returns bigseq's client state."""
    found = universal.resume_tag(save_dir, trainer.cfg.distributed.universal_checkpoint)
    if found is None:
        return None
    tag, is_universal = found
    if is_universal and not trainer.engine.load_universal_checkpoint():
        raise BigseqError(f"{os.path.join(save_dir, tag)} is a universal checkpoint but this engine was not "
                          f"configured to load one; a --deepspeed-config with \"checkpoint\" must not set "
                          f"load_universal to false")
    where = os.path.join(save_dir, tag)
    meta = files.read_meta(where)
    check_compatible(meta, trainer, where)
    names_in_plain = is_universal and pipeline.run_pipeline_size(trainer) > 1 and (
        meta.get(pipeline.PLAIN_NAMES_KEY) or pipeline.pipeline_size(meta) == 1)
    with pipeline.plain_param_names(trainer) if names_in_plain else contextlib.nullcontext():
        path, client = trainer.engine.load_checkpoint(save_dir, tag=tag)
    if path is None:
        raise BigseqError(f"could not load checkpoint {where}; it may be damaged: remove it and point "
                          f"{os.path.join(save_dir, 'latest')} at an earlier one")
    state = client["bigseq"]
    trainer.num_updates = state["num_updates"]
    trainer.skipped_nonfinite = state.get("skipped_nonfinite", 0)
    trainer.skipped_overflow = state.get("skipped_overflow", 0)
    rngs = state.get("rng", [])
    if len(rngs) == trainer.env.world_size:
        set_rng_state(rngs[trainer.env.rank])
    else:  # another world size: the saved streams have no owner here; reproducible per (seed, rank, update)
        reseed(trainer.cfg.common.seed, trainer.env.rank, trainer.num_updates)
    return state


def load_weights_only(trainer, path: str) -> str:
    """--finetune-from-model: weights of another run, fresh optimizer/schedule/data position. -> what was loaded."""
    from bigseq.checkpoint import consolidated, pretrained, weight_source
    if os.path.isdir(path) and (consolidated.is_consolidated(path) or pretrained.is_hf_folder(path)):
        name, arch, saved_cfg = pretrained.model_of_folder(path)
        saved_model, vocab = dataclasses.asdict(saved_cfg), pretrained.vocab_size_of_folder(path)
        if consolidated.is_consolidated(path) and hasattr(trainer.cfg.model, "vocab_size"):
            saved_model["vocab_size"] = trainer.cfg.model.vocab_size  # its config may predate the field
        check_compatible({"cfg": {"model": saved_model}, "names": {"model": name, "arch": arch},
                          "vocab_size": vocab}, trainer, path, weights_only=True)
        pretrained.check_pad(path, name, trainer.task.pad_idx)
        source = pretrained.weight_source(path, saved_cfg)
        _refuse_whole_weights_under_tp(trainer, path)
        loaded = weight_source.load_into_engine(trainer, source, f"--finetune-from-model {path}")
        _refresh_master_weights(trainer)
        zero3 = trainer.engine.zero_optimization_stage() == 3
        return (f"started from {path} ({arch}): {loaded} tensors read one group at a time"
                f"{' by rank 0 and scattered (ZeRO-3)' if zero3 else ''}")
    save_dir, tag = files.resolve_checkpoint(path)
    where = os.path.join(save_dir, tag)
    meta = files.read_meta(where)
    check_compatible(meta, trainer, where, weights_only=True)
    saved_tp = files.tensor_parallel_size(meta)
    same_tp = saved_tp == trainer.cfg.distributed.tensor_parallel_size
    if pipeline.pipeline_size(meta) == pipeline.run_pipeline_size(trainer) and same_tp and not meta.get("universal"):
        trainer.engine.load_checkpoint(save_dir, tag=tag, load_module_only=True, load_optimizer_states=False,
                                       load_lr_scheduler_states=False)
        return f"started from the weights of {where}"
    from bigseq.checkpoint import inference  # another pipeline layout: through the plain model's names
    _load_model_state(trainer, inference.plain_state_dict(save_dir, tag, meta, trainer.task), where)
    return f"started from the weights of {where}"


def _load_model_state(trainer, state: dict, where: str) -> None:
    """A plain model's state dict into the engine's model: the whole model, or this rank's pipeline stage."""
    import deepspeed
    _refuse_whole_weights_under_tp(trainer, where)
    module = trainer.engine.module
    if pipeline.run_pipeline_size(trainer) > 1:
        pipeline.load_plain_state(trainer, state, where)
    else:
        zero3 = trainer.engine.zero_optimization_stage() == 3
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=0, enabled=zero3):
            missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BigseqError(f"{where} does not match the model (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}); use the --arch it was trained or converted with")
    _refresh_master_weights(trainer)


def _refuse_whole_weights_under_tp(trainer, where: str) -> None:
    """Whole weights would meet this rank's AutoTP slices; only a checkpoint of the same T loads as is."""
    if trainer.cfg.distributed.tensor_parallel_size > 1:
        raise BigseqError(f"--finetune-from-model {where}: with --tensor-parallel-size > 1 only a checkpoint of the "
                          f"same tensor-parallel size loads; start at --tensor-parallel-size 1, save, and change it "
                          f"through `bigseq convert universal`")


def _refresh_master_weights(trainer) -> None:
    optimizer = trainer.engine.optimizer
    if hasattr(optimizer, "refresh_fp32_params"):  # ZeRO keeps fp32 master copies of the weights
        optimizer.refresh_fp32_params()
