"""The rooms of DESIGN.md, checked on the import graph read from the source (nothing is imported).

modules never import distributed/ or deepspeed; models never import deepspeed; deepspeed is
imported only under distributed/ and checkpoint/; cli/ never imports deepspeed; the packages
form no cycle; importing a module has no side effect (no top-level calls, and a package's
__init__ imports nothing from another bigseq package).
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bigseq")


def modules(root: str = ROOT) -> dict[str, ast.Module]:
    """Dotted name ('bigseq.models.family') -> parsed source, for every .py file of the package."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, ".")
                with open(path) as f:
                    tree = ast.parse(f.read(), path)
                tree.is_package = name == "__init__.py"
                out[rel.removesuffix(".__init__")] = tree
    return out


def imports(name: str, tree: ast.Module, top_level_only: bool = False) -> set[str]:
    """Absolute names a module imports, anywhere in it (lazy imports inside functions count too)."""
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".")[: len(name.split(".")) - node.level + tree.is_package]
                base = ".".join(package + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def room(name: str) -> str:
    """'bigseq.models.transformer_lm.model' -> 'models'; a root module is its own room ('registry')."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "bigseq"


def imports_deepspeed(names: set[str]) -> bool:
    return any(n == "deepspeed" or n.startswith("deepspeed.") for n in names)


def violations(root: str = ROOT) -> list[str]:
    found = []
    mods = modules(root)
    for name, tree in sorted(mods.items()):
        names = imports(name, tree)
        bigseq_rooms = {room(n) for n in names if n.startswith("bigseq.") and n in mods}
        where = room(name)
        if where == "modules" and "distributed" in bigseq_rooms:
            found.append(f"{name}: modules import distributed/")
        if imports_deepspeed(names) and where not in ("distributed", "checkpoint"):
            found.append(f"{name}: imports deepspeed outside distributed/ and checkpoint/")
        found += side_effects(name, tree)
    found += [f"package cycle: {' -> '.join(c)}" for c in cycles(mods)]
    return found


def side_effects(name: str, tree: ast.Module) -> list[str]:
    out = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            out.append(f"{name}:{node.lineno}: a call at import time")
        if isinstance(node, (ast.Assign, ast.AugAssign)) and "os.environ" in ast.unparse(node):
            out.append(f"{name}:{node.lineno}: sets the environment at import time")
    if tree.is_package:
        out += [f"{name}: its __init__ imports {n} for an effect (the name is never used)"
                for n in imports_for_effect(name, tree)]
    return out


def imports_for_effect(name: str, tree: ast.Module) -> list[str]:
    """Another bigseq package imported at the top of a package's __init__ under a name it never uses."""
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {e.value for n in ast.walk(tree) if isinstance(n, ast.List) for e in n.elts if isinstance(e, ast.Constant)}
    out = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            bound = [(a.asname or a.name.split(".")[0], a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            bound = [(a.asname or a.name, f"{node.module}.{a.name}") for a in node.names]
        else:
            continue
        out += [full for local, full in bound if full.startswith("bigseq.") and not full.startswith(name + ".")
                and local not in used]
    return out


def room_graph(mods: dict[str, ast.Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, tree in mods.items():
        src = room(name)
        targets = {room(n) for n in imports(name, tree) if n.startswith("bigseq.") and n in mods}
        graph.setdefault(src, set()).update(t for t in targets if t != src)
    return graph


def cycles(mods: dict[str, ast.Module]) -> list[list[str]]:
    """One cycle per strongly connected group of rooms (Tarjan)."""
    graph = room_graph(mods)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_room_is_broken():
    assert violations() == []


@pytest.mark.parametrize("rule", ["models", "cli", "modules"])
def test_named_rooms_never_import_deepspeed(rule):
    mods = modules()
    bad = [n for n, t in mods.items() if room(n) == rule and imports_deepspeed(imports(n, t))]
    assert bad == []


def test_the_checker_sees_each_kind_of_violation(tmp_path):
    """A tiny package with one of each violation: every one is reported."""
    pkg = tmp_path / "bigseq"
    files = {
        "__init__.py": "",
        "modules/__init__.py": "",
        "modules/attention.py": "from bigseq.distributed import engine\n",
        "models/__init__.py": "",
        "models/model.py": "def f():\n    import deepspeed\n",
        "cli/__init__.py": "",
        "cli/train.py": "from deepspeed.utils import logger\n",
        "distributed/__init__.py": "import os\nos.environ['X'] = '1'\n",
        "distributed/engine.py": "import deepspeed\nfrom bigseq.checkpoint import universal\n",
        "checkpoint/__init__.py": "import bigseq.distributed\n",
        "checkpoint/universal.py": "import warnings\nwarnings.filterwarnings('ignore')\n",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    found = "\n".join(violations(str(pkg)))
    for expected in ("bigseq.modules.attention: modules import distributed/",
                     "bigseq.models.model: imports deepspeed outside", "bigseq.cli.train: imports deepspeed outside",
                     "bigseq.distributed:2: sets the environment", "bigseq.checkpoint: its __init__ imports",
                     "bigseq.checkpoint.universal:2: a call at import time",
                     "package cycle: checkpoint -> distributed"):
        assert expected in found, found
