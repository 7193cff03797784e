"""Request bodies that several tests read: the benchmark's realistic ones (bench/bodies.py,
loaded from its file, since bench/ is no package), the recorded Claude Code request, and random
edits of their objects for the differential tests of the request parsers."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import random
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
JSON = dict[str, Any]


@functools.cache
def bench_bodies() -> ModuleType:
    """bench/bodies.py as a module (its functions build fresh bodies at every call)."""
    spec = importlib.util.spec_from_file_location("bench_bodies", ROOT / "bench" / "bodies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture(path: str) -> JSON:
    """A recorded body under tests/fixtures (a fresh copy at every call)."""
    body: JSON = json.loads((FIXTURES / path).read_text())
    return body


def recorded_claude_code() -> JSON:
    """The request Claude Code sent, as recorded (a fresh copy at every call)."""
    return fixture("anthropic/claude_code_request.json")


def as_json(body: Any) -> JSON:
    """`body` as a client's JSON decodes: tuples as lists, no shared objects."""
    decoded: JSON = orjson.loads(orjson.dumps(body))
    return decoded


def compact(body: JSON) -> bytes:
    """Compact JSON, as orjson writes it, integers past 64 bits included."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def edited(rng: random.Random, item: JSON, keys: Sequence[str], kinds: Sequence[Any],
           values: Sequence[Any]) -> JSON:
    """A copy of `item` with one to three of `keys` removed or set: `type` to one of `kinds`
    now and then, any key to one of `values` (wrong types included)."""
    item = copy.deepcopy(item)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.25:
            item.pop(key, None)
        elif roll < 0.4 and key == "type":
            item["type"] = rng.choice(kinds)
        else:
            item[key] = copy.deepcopy(rng.choice(values))
    return item
