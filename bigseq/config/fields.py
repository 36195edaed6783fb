"""Field kinds of a config dataclass: nested sections and runtime fields.

A field declared ``section(EncoderConfig, "encoder_")`` holds a config of its own whose
fields get the prefix as flags (``cfg.encoder.embed_dim`` is ``--encoder-embed-dim``),
so an encoder-decoder config declares its encoder and decoder once. A field declared
``runtime(...)`` may change when a run resumes (dropouts, kernels, recomputation);
the others are the architecture, which a checkpoint and the run resuming it share.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any


def runtime(default, **kwargs):
    """A field that may differ between a checkpoint and the run resuming it (not architecture)."""
    return dataclasses.field(default=default, metadata={"runtime": True, **kwargs})


def section(cls: type, prefix: str):
    """A nested config whose fields become flags with ``prefix`` (``encoder_`` -> ``--encoder-...``)."""
    return dataclasses.field(default_factory=cls, metadata={"section_prefix": prefix})


def section_prefix(f: dataclasses.Field) -> str | None:
    return f.metadata.get("section_prefix")


def flat_fields(cls: type) -> dict[str, tuple[str, ...]]:
    """Flat (flag) name -> attribute path, one level of sections deep: ``encoder_layers -> (encoder, layers)``."""
    out: dict[str, tuple[str, ...]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        prefix = section_prefix(f)
        if prefix is None:
            out[f.name] = (f.name,)
        else:
            out.update({prefix + sub: (f.name, sub) for sub in flat_fields(hints[f.name])})
    return out


def architecture_values(cfg) -> dict[str, Any]:
    """Flat name -> value of every field not marked runtime: what must match on resume."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if not f.init or f.metadata.get("runtime"):
            continue
        value = getattr(cfg, f.name)
        prefix = section_prefix(f)
        if prefix is None:
            out[f.name] = value
        else:
            out.update({prefix + k: v for k, v in architecture_values(value).items()})
    return out


def runtime_fields(cls: type) -> set[str]:
    """Flat names of the fields marked runtime."""
    hints = typing.get_type_hints(cls)
    out = set()
    for f in dataclasses.fields(cls):
        prefix = section_prefix(f)
        if prefix is not None:
            out |= {prefix + name for name in runtime_fields(hints[f.name])}
        elif f.metadata.get("runtime"):
            out.add(f.name)
    return out
