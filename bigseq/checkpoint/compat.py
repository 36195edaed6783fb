"""Whether a checkpoint can be loaded into this run: same architecture and vocabulary, a ZeRO stage and
world size DeepSpeed can load it into. Each refusal is one line naming what to do instead."""

from __future__ import annotations

import json
import os

from bigseq.checkpoint import files, pipeline, universal_stages
from bigseq.config.fields import architecture_values, flat_fields
from bigseq.errors import BigseqError
from bigseq.models.family import get_family

_MISSING = object()


def architecture_diffs(config_cls: type, saved: dict, current) -> list[tuple[str, object, object]]:
    """(flag name, saved, now) of every architecture field (not marked runtime) that differs; fields the
    saved config does not have are not compared."""
    now = json.loads(json.dumps(architecture_values(current)))  # tuples as the saved JSON has them: lists
    out = []
    for name, path in flat_fields(config_cls).items():
        value = saved
        for part in path:
            value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if name in now and value is not _MISSING and value != now[name]:
            out.append((name, value, now[name]))
    return out


def check_compatible(meta: dict, trainer, where: str, *, weights_only: bool = False) -> None:
    """Refuse a checkpoint of another architecture / vocabulary / (unless weights_only) incompatible layout.
    Runtime fields (dropouts, kernels, activation checkpointing) may differ."""
    cfg = trainer.cfg
    family = get_family(cfg.names["model"])
    diffs = architecture_diffs(family.config_cls, meta["cfg"]["model"], cfg.model)
    if meta["names"].get("model") != cfg.names.get("model") or diffs:
        detail = ", ".join(f"{k}: saved {saved!r} vs now {now!r}" for k, saved, now in diffs[:3])
        raise BigseqError(f"checkpoint {where} is of another architecture (--arch {meta['names'].get('arch')}"
                          f"{'; ' + detail if detail else ''}); use the same --arch/model flags or another --save-dir")
    # a pretrained model's embedding may have more rows than the tokenizer has ids (padded vocabularies)
    saved, data = meta["vocab_size"], trainer.task.vocab_size
    if saved < data or (not weights_only and saved != data):
        raise BigseqError(f"checkpoint {where} has a vocabulary of {meta['vocab_size']} but the data has "
                          f"{trainer.task.vocab_size}; use the data it was trained on or another --save-dir")
    if weights_only:
        return
    pipeline.check_pipeline_size(meta, trainer, where)
    saved_tp = files.tensor_parallel_size(meta)
    tp = cfg.distributed.tensor_parallel_size
    if saved_tp != tp and not meta.get("universal"):
        raise BigseqError(f"checkpoint {where} holds --tensor-parallel-size {saved_tp} shards, this run uses {tp}; "
                          f"resume with {saved_tp}, or (saved with --zero-stage 1-3) run `bigseq convert universal "
                          f"{where}` and resume")
    check_zero_stage(meta, trainer.engine.zero_optimization_stage(), where)
    saved_precision = meta["cfg"].get("distributed", {}).get("precision")
    if saved_precision and saved_precision != cfg.distributed.precision and not meta.get("universal"):
        # DeepSpeed keeps fp32 master weights and a loss scale beside bf16/fp16 weights: another optimizer
        # state, which its loaders do not translate (a KeyError deep inside them)
        raise BigseqError(f"checkpoint {where} was saved with --precision {saved_precision}, this run uses "
                          f"--precision {cfg.distributed.precision}; resume with --precision {saved_precision}, "
                          f"or start another --save-dir with --finetune-from-model {where} (weights only)")
    if meta["world_size"] != trainer.env.world_size and meta["zero_stage"] > 0 and not meta.get("universal"):
        raise BigseqError(f"checkpoint {where} was saved by {meta['world_size']} ranks with ZeRO stage "
                          f"{meta['zero_stage']}, this run has {trainer.env.world_size}; resume with "
                          f"{meta['world_size']} ranks, or run `bigseq convert universal {where}` and resume "
                          f"(the universal checkpoint is picked up automatically)")


def _stage_family(stage: int) -> str:
    """ZeRO stages whose checkpoints DeepSpeed loads into each other: 1 and 2 share a layout."""
    return {0: "0", 3: "3"}.get(stage, "1 or 2")


def check_zero_stage(meta: dict, stage: int, where: str) -> None:
    """Refuse a checkpoint that this run's ZeRO stage cannot load, naming what can."""
    saved = meta["zero_stage"]
    if meta.get("universal"):
        if stage == 0:
            raise BigseqError(f"universal checkpoint {where} loads into ZeRO stages 1-3, this run uses stage 0; "
                              f"resume with --zero-stage 1, 2 or 3")
        if _stage_family(stage) != _stage_family(saved) and not meta.get(universal_stages.NEUTRAL_KEY):
            source = os.path.join(os.path.dirname(where), meta.get("source_tag", "SOURCE_TAG"))
            raise BigseqError(f"universal checkpoint {where} was converted by an older bigseq and loads only into "
                              f"ZeRO stage {_stage_family(saved)}; resume with --zero-stage {_stage_family(saved)}, "
                              f"or convert again: rm -r {where} && bigseq convert universal {source}")
        return
    if _stage_family(stage) == _stage_family(saved):
        return
    if saved == 0:
        raise BigseqError(f"checkpoint {where} was saved with ZeRO stage 0, this run uses stage {stage}; resume "
                          f"with --zero-stage 0, or start from its weights with --finetune-from-model {where} "
                          f"(the optimizer starts fresh)")
    convert = (f", or run `bigseq convert universal {where}` and resume (a universal checkpoint loads into any "
               f"ZeRO stage 1-3)") if stage > 0 else ""
    raise BigseqError(f"checkpoint {where} was saved with ZeRO stage {saved}, this run uses stage {stage}; resume "
                      f"with --zero-stage {_stage_family(saved)}{convert}")
