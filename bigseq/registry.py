"""Name -> component registries (fairseq-style) and plugin loading.

Every component (task, model, criterion, optimizer, lr scheduler) registers a
class under a name together with its typed config dataclass. Named
architectures are functions returning a model config. The registry refuses a
duplicate name or a class of the wrong base, and an unknown name is a
BigseqError listing what is registered.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, is_dataclass
from typing import Any, Callable

from bigseq.errors import BigseqError


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    config_cls: type | None


class Registry:
    def __init__(self, kind: str, base_class: type | None = None):
        self.kind = kind
        self.base_class = base_class
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config_cls: type | None = None):
        def wrap(cls):
            if name in self._entries:
                raise BigseqError(f"{self.kind} '{name}' is registered twice "
                                  f"({self._entries[name].cls.__qualname__} and {cls.__qualname__}); rename one")
            if self.base_class is not None and not issubclass(cls, self.base_class):
                raise BigseqError(f"{self.kind} '{name}': {cls.__qualname__} must subclass "
                                  f"{self.base_class.__qualname__}")
            if config_cls is not None and not is_dataclass(config_cls):
                raise BigseqError(f"{self.kind} '{name}': config {config_cls!r} must be a dataclass")
            self._entries[name] = Entry(name, cls, config_cls)
            return cls
        return wrap

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            raise BigseqError(f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                              f"registered: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def build(self, name: str, cfg, *args, **kwargs):
        cls = self.get(name).cls
        builder = getattr(cls, "build", None)
        return builder(cfg, *args, **kwargs) if builder is not None else cls(cfg, *args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


class ArchitectureRegistry:
    """arch name -> (model name, function returning that model's config)."""

    def __init__(self):
        self._archs: dict[str, tuple[str, Callable[[], Any]]] = {}

    def register(self, model_name: str, arch_name: str):
        def wrap(fn):
            if arch_name in self._archs:
                raise BigseqError(f"architecture '{arch_name}' is registered twice; rename one")
            self._archs[arch_name] = (model_name, fn)
            return fn
        return wrap

    def get(self, arch_name: str) -> tuple[str, Callable[[], Any]]:
        if arch_name not in self._archs:
            raise BigseqError(f"unknown architecture '{arch_name}'{did_you_mean(arch_name, self._archs)}; "
                              f"registered: {', '.join(sorted(self._archs))}")
        return self._archs[arch_name]

    def names(self) -> list[str]:
        return sorted(self._archs)

    def __contains__(self, name: str) -> bool:
        return name in self._archs


TASK_REGISTRY = Registry("task")
MODEL_REGISTRY = Registry("model")
ARCH_REGISTRY = ArchitectureRegistry()
CRITERION_REGISTRY = Registry("criterion")
OPTIMIZER_REGISTRY = Registry("optimizer")
LR_SCHEDULER_REGISTRY = Registry("lr_scheduler")

register_task = TASK_REGISTRY.register
register_model = MODEL_REGISTRY.register
register_architecture = ARCH_REGISTRY.register
register_criterion = CRITERION_REGISTRY.register
register_optimizer = OPTIMIZER_REGISTRY.register
register_lr_scheduler = LR_SCHEDULER_REGISTRY.register

_BUILTIN_PACKAGES = ("bigseq.tasks", "bigseq.models", "bigseq.criterions", "bigseq.optim")
_loaded_user_dirs: set[str] = set()
_plugins_loaded = False


def import_builtin_components() -> None:
    """Import the packages whose modules register the built-in components."""
    for pkg in _BUILTIN_PACKAGES:
        importlib.import_module(pkg)


def import_user_dir(path: str) -> None:
    """Import a user's folder of components (fairseq's --user-dir)."""
    path = os.path.abspath(path)
    if path in _loaded_user_dirs:
        return
    if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "__init__.py")):
        raise BigseqError(f"--user-dir {path}: not a Python package folder (it needs an __init__.py)")
    parent, name = os.path.split(path)
    if name in sys.modules and getattr(sys.modules[name], "__file__", "") != os.path.join(path, "__init__.py"):
        raise BigseqError(f"--user-dir {path}: module name '{name}' clashes with an installed module; "
                          f"rename the folder")
    sys.path.insert(0, parent)
    try:
        importlib.import_module(name)
    finally:
        sys.path.remove(parent)
    _loaded_user_dirs.add(path)


def load_plugins() -> None:
    """Import every module advertised under the `bigseq.plugins` entry-point group."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group="bigseq.plugins"):
        ep.load()
