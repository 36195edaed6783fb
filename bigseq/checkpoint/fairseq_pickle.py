"""Read a fairseq ``.pt`` checkpoint without fairseq and without running pickled code.

fairseq pickles more than tensors: ``args`` (argparse.Namespace), ``cfg`` (plain containers since
0.12, omegaconf DictConfig/ListConfig before), numpy scalars in ``extra_state``. ``torch.load``
with ``weights_only=True`` refuses those globals, and ``weights_only=False`` would run whatever
the file names (fairseq#5610, #5603). So the file is loaded with ``weights_only=True`` and an
allow-list: Namespace, numpy's array/scalar/dtype rebuilders (under both numpy.core and
numpy._core), and omegaconf's containers and nodes mapped onto the small stand-ins below, which
only record their pickled state and are turned into dicts and lists after loading. Anything else
(a fairseq dataclass behind a structured config, a user class) is refused in one line naming the
global. The model config is then read with ``model_args`` from ``cfg["model"]`` (dict or
Namespace) or the legacy ``args``, by attribute or by key.
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import re
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from bigseq.errors import BigseqError


class _OmegaState:
    """What an omegaconf object pickled (its ``__dict__``), kept as data; never an omegaconf object."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _DictConfig(_OmegaState):
    pass


class _ListConfig(_OmegaState):
    pass


class _ValueNode(_OmegaState):
    pass


class _Metadata(_OmegaState):
    pass


class _TypingAny:
    """omegaconf's metadata names typing.Any as a type; a marker is all we need of it."""


_OMEGACONF_NODES = ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode", "PathNode")


def _numpy_globals() -> list:
    """numpy's rebuilders under the module names both numpy 1 (numpy.core) and 2 (numpy._core) pickle."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    allowed: list = [np.ndarray, np.dtype, (np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    # numpy 2 pickles a dtype as numpy.dtypes.<Kind>DType when asked by class
    allowed += [(type(np.dtype(c)), f"numpy.dtypes.{type(np.dtype(c)).__name__}") for c in "?bhilqBHILQefdgFDG"]
    return allowed


def allowed_globals() -> list:
    """The allow-list handed to torch.serialization.safe_globals."""
    omega = [(_DictConfig, "omegaconf.dictconfig.DictConfig"), (_ListConfig, "omegaconf.listconfig.ListConfig"),
             (_Metadata, "omegaconf.base.ContainerMetadata"), (_Metadata, "omegaconf.base.Metadata"),
             (_TypingAny, "typing.Any"), (dict, "builtins.dict"), (list, "builtins.list"), (int, "builtins.int"),
             (float, "builtins.float"), (str, "builtins.str"), (bool, "builtins.bool")]  # metadata types
    omega += [(_ValueNode, f"omegaconf.nodes.{name}") for name in _OMEGACONF_NODES]
    # omegaconf's flags are a defaultdict; its factory is one more global, checked like any other
    return [argparse.Namespace, collections.defaultdict, *_numpy_globals(), *omega]


_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_fairseq_checkpoint(path: str) -> dict:
    """The checkpoint as plain Python: dicts, lists, Namespaces, tensors, numpy values."""
    if not os.path.isfile(path):
        raise BigseqError(f"{path}: no such fairseq checkpoint file")
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _UNSUPPORTED.search(str(e))
        if found is None:  # torch wraps every load error in this type; the cause is its last line
            cause = [line for line in str(e).splitlines() if line.strip()][-1]
            raise BigseqError(f"{path}: not a readable torch checkpoint ({cause.strip()})") from None
        raise BigseqError(f"{path}: pickle global {found.group(1)} not allowed (a fairseq checkpoint is read without "
                          f"running pickled code: only argparse.Namespace, numpy values and omegaconf "
                          f"containers); re-save it with plain containers or convert it where that class "
                          f"is trusted") from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise BigseqError(f"{path}: not a readable torch checkpoint ({str(e).splitlines()[0]})") from None
    state = to_plain(state)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise BigseqError(f"{path}: not a fairseq checkpoint (no 'model' state dict at the top level)")
    return state


def to_plain(obj: Any) -> Any:
    """omegaconf stand-ins -> dict / list / value, recursively (other objects are returned as they are)."""
    if isinstance(obj, _DictConfig | _ListConfig):
        content = obj.state.get("_content")
        if isinstance(content, dict):
            return {k: to_plain(v) for k, v in content.items()}
        if isinstance(content, list):
            return [to_plain(v) for v in content]
        return content  # None, "???" (missing) or an unresolved "${...}" interpolation
    if isinstance(obj, _ValueNode):
        return to_plain(obj.state.get("_val"))
    if isinstance(obj, dict):  # an OrderedDict (the model's state dict) stays one
        plain = {k: to_plain(v) for k, v in obj.items()}
        return OrderedDict(plain) if isinstance(obj, OrderedDict) else plain
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    if isinstance(obj, argparse.Namespace):
        return argparse.Namespace(**{k: to_plain(v) for k, v in vars(obj).items()})
    return obj


class ModelArgs:
    """The model config of a checkpoint, read the same from a Namespace or a dict, flat or nested
    (``encoder_embed_dim`` also finds ``encoder.embed_dim``)."""

    def __init__(self, source: Any):
        self.source = source

    def get(self, name: str, default: Any = None) -> Any:
        value = _lookup(self.source, name)
        if value is _MISSING:
            head, _, tail = name.partition("_")
            value = _lookup(_lookup(self.source, head), tail) if tail else _MISSING
        return default if value is _MISSING or value is None else value

    def has(self, name: str) -> bool:
        return _lookup(self.source, name) is not _MISSING

    @property
    def arch(self) -> str | None:
        return self.get("arch") or self.get("_name")


_MISSING = object()


def _lookup(source: Any, name: str) -> Any:
    if isinstance(source, dict):
        return source.get(name, _MISSING)
    if source is None or source is _MISSING:
        return _MISSING
    return getattr(source, name, _MISSING)


def model_args(state: dict, path: str) -> ModelArgs:
    """``cfg["model"]`` (fairseq >= 0.10: dict or Namespace), else the legacy top-level ``args``."""
    cfg = state.get("cfg")
    model = _lookup(cfg, "model") if cfg is not None else _MISSING
    if model is not _MISSING and model is not None:
        return ModelArgs(model)
    if state.get("args") is not None:
        return ModelArgs(state["args"])
    raise BigseqError(f"{path}: the checkpoint records no model config (neither cfg['model'] nor args); "
                      f"it cannot be converted")
