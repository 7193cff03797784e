"""No module keeps a table of what clients sent: a cache of names, schemas or pieces of
requests lives in a reuse table the app makes and passes down (protocols/reuse.py: one per
gateway key, so one caller cannot time what another sent, and bounded with the rest of it).

Checked over src/ with ast: a module-level container that starts empty (a table filled at run
time) and a function memoised at module level (functools.cache, lru_cache) are each either
listed below with the reason they hold nothing of a client's, or a failure.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import babelgate

SRC = Path(babelgate.__file__).parent

# (module path, name) -> why it may be kept by the module.
ALLOWED = {
    ("protocols/__init__.py", "_loaded"): "the codecs by protocol name, loaded on first use",
    ("protocols/anthropic/request.py", "_NO_INPUT"): "a marker compared by identity, never "
    "handed out or filled",
    ("protocols/openai_responses/stream_out.py", "_TEXT_DELTA_TAILS"): "event tails for "
    "sequence numbers 0..4095, the same bytes for every stream",
    ("protocols/openai_responses/stream_out.py", "_QUOTED_TAILS"): "the same tails after a "
    "closing quote, made alongside",
    ("storage/migrations.py", "MIGRATIONS"): "the migrations, registered at import",
    ("providers/http.py", "_ca_context"): "one TLS context per CA file of the settings",
    ("providers/http.py", "origin_of"): "upstream URLs of the settings' providers",
    ("providers/http.py", "_tls_context"): "the one default TLS context",
    ("tokens.py", "encoding"): "the tokenizer, loaded once",
    ("books/prices.py", "catalogue_model_ids"): "the model ids of the price table shipped in "
    "the package, read once",
}
_MUTABLE_CALLS = frozenset({"dict", "list", "set", "OrderedDict", "collections.OrderedDict",
                            "defaultdict", "collections.defaultdict", "deque",
                            "collections.deque"})


def tables(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, name) of each module-level table in `tree`."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if any("cache" in ast.unparse(decorator) for decorator in node.decorator_list):
                yield node.lineno, node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            value = node.value
            empty = (isinstance(value, ast.Dict) and not value.keys) or (
                isinstance(value, (ast.List, ast.Set)) and not value.elts) or (
                isinstance(value, ast.Call) and not value.args
                and ast.unparse(value.func) in _MUTABLE_CALLS)
            if empty:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    yield node.lineno, ast.unparse(target)


def unexplained(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()
        for line, name in tables(ast.parse(path.read_text())):
            if (where, name) not in ALLOWED:
                found.append(f"{where}:{line}: {name}")
    return found


def test_no_module_keeps_a_table_of_what_clients_sent() -> None:
    assert unexplained(SRC) == []


def test_every_allowed_table_still_exists() -> None:
    """An entry for a table that went away would let a new one of that name in unseen."""
    present = {(path.relative_to(SRC).as_posix(), name)
               for path in SRC.rglob("*.py") for _, name in tables(ast.parse(path.read_text()))}
    assert set(ALLOWED) <= present, set(ALLOWED) - present


def test_the_check_finds_caches_and_empty_tables(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "import functools\n_MAPS: dict[str, int] = {}\nSEEN = set()\nKINDS = {'a': 1}\n"
        "@functools.lru_cache(maxsize=8)\ndef name(x): return x\n"
        "def plain(): local = {}\n")
    assert unexplained(tmp_path) == ["m.py:2: _MAPS", "m.py:3: SEEN", "m.py:6: name"]
