"""Typed config dataclasses -> fairseq-style CLI flags.

A config is a ``@dataclass(kw_only=True)`` whose fields carry a docstring (a
string literal on the line after the field) that becomes the flag's --help
text. ``--decoder-layers`` is the flag of field ``decoder_layers``.
A field's ``metadata={"aliases": ("-s",)}`` adds short forms (fairseq's ``-s/-t``).
One level of nesting (``section(...)``, see fields.py): a nested config's fields get
its prefix, so ``cfg.encoder.embed_dim`` is ``--encoder-embed-dim`` (fairseq's flat
names). Precedence: dataclass default (or the named architecture) < YAML < flags.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import sys
import textwrap
import types
import typing
from typing import Any, Literal

from bigseq.config.fields import section_prefix
from bigseq.errors import BigseqError
from bigseq.registry import did_you_mean


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings of a dataclass's fields (and its bases'), read from the source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:] + [None]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _unwrap_optional(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _converter(tp, flag: str):
    """(argparse type callable, choices, nargs) for a field type."""
    tp, _ = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = list(typing.get_args(tp))
        return type(choices[0]), choices, None
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1]
        conv, choices, _ = _converter(inner, flag)
        return conv, choices, "+"
    if tp in (int, float, str):
        return tp, None, None
    raise TypeError(f"config field for {flag}: unsupported type {tp!r}")


def _coerce(value, tp, key: str):
    """Type-check a value coming from YAML or a saved checkpoint config."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise BigseqError(f"config key '{key}' cannot be null")
    if base is bool:
        if isinstance(value, bool):
            return value
        raise BigseqError(f"config key '{key}' must be true or false, got {value!r}")
    conv, choices, nargs = _converter(base, key)
    try:
        out = [conv(v) for v in value] if nargs else conv(value)
    except (TypeError, ValueError):
        raise BigseqError(f"config key '{key}' must be {getattr(base, '__name__', base)}, got {value!r}") from None
    for v in (out if nargs else [out]):
        if choices and v not in choices:
            raise BigseqError(f"config key '{key}' must be one of {choices}, got {v!r}")
    return out


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, title: str,
                       seen: set[str] | None = None, prefix: str = "", group=None) -> list[str]:
    """Add one flag per field of ``cls`` (default SUPPRESS: only given flags land); a section's
    fields get its prefix. ``seen``: flat names already added by another config; they are skipped
    (one flag then sets the field in every config that has it) and new names are added to it.
    """
    group = group or parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    dests = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if not f.init or f.metadata.get("cli") is False or (seen is not None and name in seen):
            continue
        if section_prefix(f) is not None:
            dests += add_dataclass_args(parser, hints[f.name], title, seen, prefix + section_prefix(f), group)
            continue
        if seen is not None:
            seen.add(name)
        _add_flag(group, f, name, hints[f.name], docs.get(f.name, ""))
        dests.append(name)
    return dests


def _add_flag(group, f: dataclasses.Field, name: str, tp, doc: str) -> None:
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    help_text = (f"{doc} (default: {default})" if default is not None else doc).replace("%", "%%")
    if f.metadata.get("positional"):
        group.add_argument(name, nargs="?", default=argparse.SUPPRESS, help=help_text)
    elif _unwrap_optional(tp)[0] is bool and name.startswith("no_"):
        # fairseq's negative switches (--no-save, --no-scale-embedding): presence means True
        group.add_argument(flag_name(name), dest=name, action="store_true", default=argparse.SUPPRESS, help=help_text)
    elif _unwrap_optional(tp)[0] is bool:
        group.add_argument(flag_name(name), dest=name, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=help_text)
    else:
        conv, choices, nargs = _converter(tp, flag_name(name))
        group.add_argument(flag_name(name), *f.metadata.get("aliases", ()), dest=name, type=conv, choices=choices,
                           nargs=nargs, default=argparse.SUPPRESS, help=help_text,
                           metavar=None if choices else name.upper())


def build_config(cls: type, base: Any, values: dict[str, Any], prefix: str = ""):
    """``base`` (an instance of cls, or None for the defaults) updated with ``values``: flat names
    (``encoder_layers``, with ``prefix`` inside a section) or, for a section, a mapping of its own
    (a saved config's ``{"encoder": {"layers": 6}}``)."""
    hints = typing.get_type_hints(cls)
    updates = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = prefix + f.name
        sub_prefix = section_prefix(f)
        if sub_prefix is not None:
            nested = values.get(name) if isinstance(values.get(name), dict) else {}
            sub_values = {**{prefix + sub_prefix + k: v for k, v in nested.items()}, **values}
            sub_base = getattr(base, f.name) if base is not None else None
            updates[f.name] = build_config(hints[f.name], sub_base, sub_values, prefix + sub_prefix)
        elif name in values:
            updates[f.name] = _coerce(values[name], hints[f.name], name)
    return dataclasses.replace(base, **updates) if base is not None else cls(**updates)


class FlagParser(argparse.ArgumentParser):
    """argparse that turns 'unrecognized arguments' into a did-you-mean error line.

    Abbreviations are off: with generated flags a prefix silently picks a field.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            known = [o for a in self._actions for o in a.option_strings]
            bad = message.split(":", 1)[1].split()
            hints = [f"{b}{did_you_mean(b.split('=')[0], known)}" for b in bad if b.startswith("-")]
            if hints:
                message = "unknown flag " + "; ".join(hints)
        self.exit(2, f"{self.prog}: error: {message}\n")


def main_argv(argv=None) -> list[str]:
    return list(sys.argv[1:] if argv is None else argv)
