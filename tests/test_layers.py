"""Imports follow the layering the README's architecture section draws: a module imports only
from its own layer and the layers below it. The table below is that drawing, lowest first;
every module under src/babelgate must fall in one of its layers.

`protocols/reuse.py` (the table of request pieces found again) is in the protocols layer:
the codecs import it, nothing below them does. `storage` speaks SQL and imports
nothing of ours; `books` (usage records, prices, costs) may write through storage; only the
server uses either, so they sit just below it. `limits` (per-key limits and budgets, in
memory or Redis) sits between them and the server. `claude_code` (the local Claude Code CLI
as a provider: its processes, sessions and projects) uses the providers, the settings and
storage, and only the server uses it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from pathlib import Path

import babelgate

SRC = Path(babelgate.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("babelgate",),  # the package itself (its __init__: __version__), not what lies in it
    ("babelgate.canonical",),
    ("babelgate.protocols",),
    ("babelgate.providers", "babelgate.tokens"),
    ("babelgate.config",),
    ("babelgate.routing",),
    ("babelgate.storage",),
    ("babelgate.books",),
    ("babelgate.limits",),
    ("babelgate.claude_code",),
    ("babelgate.dashboard",),  # static files the server reads as package data
    ("babelgate.server",),
    ("babelgate.cli", "babelgate.__main__"),
)


def layer_of(module: str, layers: Sequence[Sequence[str]]) -> int | None:
    """The layer of `module`: that of the longest name in the table it is or lies in (the
    top package's name stands for its __init__ alone)."""
    best, rank = -1, None
    for index, names in enumerate(layers):
        for name in names:
            inside = "." in name and module.startswith(name + ".")
            if (module == name or inside) and len(name) > best:
                best, rank = len(name), index
    return rank


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """The dotted name of the module at `path` (root being the package's folder), and
    whether it is a package's __init__."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, module name) of each import in `tree`, relative ones resolved; `from X import
    y` names X.y, since y may be a module."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{source}.{alias.name}"


def wrong_imports(root: Path, layers: Sequence[Sequence[str]]) -> list[str]:
    """Every import under `root` against the layering, and every module outside it."""
    top = root.name
    problems = []
    for path in sorted(root.rglob("*.py")):
        module, is_package = module_name(path, root)
        rank = layer_of(module, layers)
        where = path.relative_to(root.parent)
        if rank is None:
            problems.append(f"{where}: {module} is in no layer")
            continue
        for line, target in imported(ast.parse(path.read_text()), module, is_package):
            if target != top and not target.startswith(top + "."):
                continue  # not ours
            # `from pkg import name`: the name is a module or an attribute of pkg; either
            # way pkg's layer decides, unless the name is a module of its own.
            target_rank = layer_of(target, layers)
            if target_rank is None:
                target_rank = layer_of(target.rpartition(".")[0], layers)
            if target_rank is not None and target_rank > rank:
                problems.append(f"{where}:{line}: {module} imports {target} from a layer above")
    return problems


def test_src_follows_the_layers() -> None:
    assert wrong_imports(SRC, LAYERS) == []


def test_the_check_catches_a_wrong_direction(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "low").mkdir(parents=True)
    (root / "high").mkdir()
    (root / "__init__.py").write_text("")
    (root / "low" / "__init__.py").write_text("")
    (root / "high" / "__init__.py").write_text("from pkg import low\n")
    (root / "high" / "a.py").write_text("from ..low import thing\nimport os\n")
    layers = (("pkg",), ("pkg.low",), ("pkg.high",))
    assert wrong_imports(root, layers) == []
    (root / "low" / "b.py").write_text("def f():\n    from pkg.high.a import thing\n")
    (root / "low" / "c.py").write_text("from ..high import a\n")
    (root / "low" / "d.py").write_text("from .. import high\n")
    assert wrong_imports(root, layers) == [
        "pkg/low/b.py:2: pkg.low.b imports pkg.high.a.thing from a layer above",
        "pkg/low/c.py:1: pkg.low.c imports pkg.high.a from a layer above",
        "pkg/low/d.py:1: pkg.low.d imports pkg.high from a layer above",
    ]
    (root / "other.py").write_text("")
    assert wrong_imports(root, layers)[-1] == "pkg/other.py: pkg.other is in no layer"
