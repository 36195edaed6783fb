"""Parsing the training config: generic sections + the chosen components' configs.

``parse_train_config(argv)`` is what ``bigseq train`` runs: a first pass reads
--config/--user-dir and the component names (--task, --arch, --criterion,
--optimizer, --lr-scheduler), a second pass adds every field of the chosen
components as a flag. Batch sizes are GLOBAL (summed over data-parallel ranks)
so the same flags give the same updates on any world size.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from bigseq import registry
from bigseq.config.fields import flat_fields
from bigseq.config.flags import FlagParser, add_dataclass_args, build_config, main_argv
from bigseq.config.sections import COMPONENT_DEFAULTS, SECTIONS, DistributedConfig, TrainConfig
from bigseq.config.wall_time import parse_wall_time
from bigseq.config.yaml_file import check_yaml_keys, load_yaml
from bigseq.errors import BigseqError


def component_classes(names: dict[str, str], model_base=None) -> dict[str, tuple[type, Any]]:
    """component -> (config class, base instance or None) for the chosen names. The model's base is
    ``model_base`` when given (a pretrained folder's config; names["model"] set), else the named
    architecture; a saved config whose architecture came from a folder (no registered --arch) has none."""
    if model_base is None and (names["arch"] in registry.ARCH_REGISTRY or "model" not in names):
        model_name, arch_fn = registry.ARCH_REGISTRY.get(names["arch"])
        names["model"], model_base = model_name, arch_fn()
    out = {
        "task": (registry.TASK_REGISTRY.get(names["task"]).config_cls, None),
        "model": (registry.MODEL_REGISTRY.get(names["model"]).config_cls, model_base),
        "criterion": (registry.CRITERION_REGISTRY.get(names["criterion"]).config_cls, None),
        "optimizer": (registry.OPTIMIZER_REGISTRY.get(names["optimizer"]).config_cls, None),
        "lr_scheduler": (registry.LR_SCHEDULER_REGISTRY.get(names["lr_scheduler"]).config_cls, None),
    }
    return out


def _pre_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--config")
    p.add_argument("--user-dir", dest="user_dir")
    for name in COMPONENT_DEFAULTS:
        p.add_argument("--" + name.replace("_", "-"), dest=name)
    p.add_argument("--finetune-from-model", dest="finetune_from_model")
    return p


def load_components(user_dir: str | None) -> None:
    registry.import_builtin_components()
    registry.load_plugins()
    if user_dir:
        registry.import_user_dir(user_dir)


def _add_meta_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("components")
    g.add_argument("--config", help="YAML file of option: value pairs (same names as the flags; flags win)")
    g.add_argument("--user-dir", help="Folder (Python package) of your own registered components")
    g.add_argument("--task", help=f"Task: {', '.join(registry.TASK_REGISTRY.names())}")
    g.add_argument("--arch", "-a", help=f"Model architecture: {', '.join(registry.ARCH_REGISTRY.names())}")
    g.add_argument("--criterion", help=f"Loss: {', '.join(registry.CRITERION_REGISTRY.names())}")
    g.add_argument("--optimizer", help=f"Optimizer: {', '.join(registry.OPTIMIZER_REGISTRY.names())}")
    g.add_argument("--lr-scheduler", help=f"LR schedule: {', '.join(registry.LR_SCHEDULER_REGISTRY.names())}")
    g.add_argument("--local_rank", "--local-rank", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def parse_train_config(argv=None, prog: str = "bigseq train", pretrained_model=None) -> TrainConfig:
    """``pretrained_model(path)``: (model name, arch label, model config) of a --finetune-from-model
    folder, or None; it gives the architecture when --arch is not given."""
    argv = main_argv(argv)
    pre, _ = _pre_parser().parse_known_args(argv)
    yaml_values = load_yaml(pre.config) if pre.config else {}
    load_components(pre.user_dir or yaml_values.get("user_dir"))
    names = {k: getattr(pre, k) or yaml_values.get(k) or d for k, d in COMPONENT_DEFAULTS.items()}
    pretrained = None
    if pretrained_model is not None and not (pre.arch or yaml_values.get("arch")):
        pretrained = pretrained_model(pre.finetune_from_model or yaml_values.get("finetune_from_model"))
    if pretrained is not None:  # --finetune-from-model FOLDER without --arch: the folder's architecture
        names["model"], names["arch"], _ = pretrained
    classes = component_classes(names, pretrained[2] if pretrained else None)

    parser = FlagParser(prog=prog, description="Train a model inside a DeepSpeed engine.")
    _add_meta_args(parser)
    seen: set[str] = set()
    groups = {**SECTIONS, **{k: cls for k, (cls, _) in classes.items()}}
    for section, cls in groups.items():
        title = f"{section} ({names[section]})" if section in names else section
        add_dataclass_args(parser, cls, title, seen)
    args = vars(parser.parse_args(argv))

    known = {name for cls in groups.values() for name in flat_fields(cls)} | set(COMPONENT_DEFAULTS) | {"user_dir"}
    check_yaml_keys(yaml_values, known, pre.config or "")
    values = {k: v for k, v in yaml_values.items() if k not in COMPONENT_DEFAULTS}
    values.update({k: v for k, v in args.items() if k not in ("config", "user_dir", "local_rank", *COMPONENT_DEFAULTS)})

    built = {s: build_config(cls, None, values) for s, cls in SECTIONS.items()}
    for comp, (cls, base) in classes.items():
        built[comp] = build_config(cls, base, values)
    cfg = TrainConfig(names=names, **built)
    validate_train_config(cfg)
    return cfg


def validate_train_config(cfg: TrainConfig) -> None:
    d, o = cfg.dataset, cfg.optimization
    if d.batch_size is None and d.max_tokens is None:
        raise BigseqError("set --batch-size N or --max-tokens N (global over data-parallel ranks)")
    if d.batch_size is not None and d.batch_size <= 0 or d.max_tokens is not None and d.max_tokens <= 0:
        raise BigseqError("--batch-size and --max-tokens must be positive")
    if o.update_freq < 1:
        raise BigseqError("--update-freq must be >= 1")
    if cfg.distributed.offload_optimizer == "cpu" and cfg.distributed.zero_stage == 0:
        raise BigseqError("--offload-optimizer cpu needs --zero-stage 1, 2 or 3")
    validate_pipeline_config(cfg.distributed)
    parse_wall_time(o.max_wall_time)  # a bad --max-wall-time fails before any process group
    unify_activation_checkpointing(cfg)


def unify_activation_checkpointing(cfg: TrainConfig) -> None:
    """--activation-checkpointing and the model's own --checkpoint-activations are one switch: set both."""
    dist, model = cfg.distributed, cfg.model
    if dist.checkpoint_interval < 1:
        raise BigseqError(f"--checkpoint-interval must be >= 1, got {dist.checkpoint_interval}")
    on = dist.activation_checkpointing or getattr(model, "checkpoint_activations", False)
    if not on:
        return
    if dist.pipeline_parallel_size == 1 and not hasattr(model, "checkpoint_activations"):
        raise BigseqError(f"--activation-checkpointing is not supported for --arch {cfg.names['arch']} "
                          f"without a pipeline; drop --activation-checkpointing")
    dist.activation_checkpointing = True
    if hasattr(model, "checkpoint_activations"):
        model.checkpoint_activations = True


def validate_pipeline_config(dist: DistributedConfig) -> None:
    p, method = dist.pipeline_parallel_size, dist.pipeline_partition_method
    if p < 1:
        raise BigseqError(f"--pipeline-parallel-size must be >= 1, got {p}")
    if method not in ("parameters", "uniform") and not (method.startswith("type:") and len(method) > 5):
        raise BigseqError(f"--pipeline-partition-method {method!r}: use parameters, uniform or type:<LayerClass>")
    if p > 1 and dist.zero_stage >= 2:
        raise BigseqError(f"--zero-stage {dist.zero_stage} does not work with --pipeline-parallel-size {p} "
                          f"(DeepSpeed's pipeline engine supports ZeRO stage 0 or 1); use --zero-stage 1")


def train_config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def train_config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved in a checkpoint (components must be registered)."""
    names = dict(d["names"])
    classes = component_classes(names)
    built = {s: build_config(cls, None, d.get(s, {})) for s, cls in SECTIONS.items()}
    for comp, (cls, base) in classes.items():
        built[comp] = build_config(cls, base, d.get(comp, {}))
    return TrainConfig(names=names, **built)
