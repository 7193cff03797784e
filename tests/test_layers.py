"""Imports follow the layering the README's architecture section draws: a module imports only
from its own layer and the layers below it. The layers are read from that drawing itself (the
block after "Dependencies point one way", lowest last), so the README cannot drift from what
this checks; every module under src/babelgate must fall in one of its layers.

Why the layers are where they are is said in the drawing: `protocols/reuse.py` (the table of
request pieces found again) sits with the codecs, nothing below them imports it; `storage`
speaks SQL and imports nothing of ours; `books` (usage records, prices, costs) may write
through storage; `limits` (per-key limits and budgets) and `claude_code` (the local Claude
Code CLI as a provider) sit below the server, the only layer that uses them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import babelgate

SRC = Path(babelgate.__file__).parent
README = Path(__file__).resolve().parent.parent / "README.md"


def drawn_layers(readme: str) -> tuple[tuple[str, ...], ...]:
    """The layers of the README's drawing, lowest first, as module names: `server/` is
    babelgate.server, `config.py` babelgate.config. The package itself (its __init__:
    __version__) is below them all."""
    found = re.search(r"Dependencies point one way.*?```\n(.*?)```", readme, re.S)
    assert found is not None, "README: no layer drawing after 'Dependencies point one way'"
    layers: list[tuple[str, ...]] = []
    for line in found[1].splitlines():
        names = re.split(r"\s{2,}", line.strip())[0]  # the names, before the comment
        layers.append(tuple(
            "babelgate." + name.strip().removesuffix("/").removesuffix(".py")
            for name in names.split(",")
        ))
    return (("babelgate",), *reversed(layers))


LAYERS = drawn_layers(README.read_text())


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


def test_the_drawing_is_read_as_drawn() -> None:
    assert LAYERS[:4] == (("babelgate",), ("babelgate.canonical",), ("babelgate.protocols",),
                          ("babelgate.providers", "babelgate.tokens"))
    assert LAYERS[-2:] == (("babelgate.server",), ("babelgate.cli", "babelgate.__main__"))
    # Every package and top-level module of src/ is drawn (none left to "in no layer").
    drawn = {name for layer in LAYERS for name in layer}
    shipped = {f"babelgate.{path.stem if path.suffix else path.name}"
               for path in SRC.iterdir()
               if (path.suffix == ".py" and path.stem != "__init__")
               or (path.is_dir() and (path / "__init__.py").exists())}
    assert shipped <= drawn, shipped - drawn


def test_a_drawing_out_of_step_with_the_code_fails() -> None:
    """The README drawn with canonical above protocols: every codec's import of a canonical
    value is then reported."""
    drawn = "protocols/          protocols/reuse.py sits with the codecs: nothing below"
    readme = README.read_text()
    line = next(line for line in readme.splitlines() if line.startswith(drawn))
    swapped = readme.replace(f"{line}\ncanonical/\n", f"canonical/\n{line}\n")
    assert swapped != readme
    problems = wrong_imports(SRC, drawn_layers(swapped))
    assert any(" imports babelgate.canonical" in problem for problem in problems), problems


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
