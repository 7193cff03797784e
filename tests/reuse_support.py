"""What the reuse tests (tests/test_reuse*.py) share."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from babelgate.protocols.reuse import Reuse


@pytest.fixture
def table() -> Reuse:
    """A reuse table of the test's own, as the app makes one per caller: a piece kept by
    another test cannot decide what this one finds. It keeps a piece the first time it is
    seen (`seen_once=0`), so that a test sees sharing from a piece's second sight; the
    default, keeping a piece when it is seen twice, has its tests in test_reuse_seen_twice.py."""
    return Reuse(seen_once=0)


def wire(body: Any) -> Any:
    """A rendered body as the upstream receives it (shared pieces go pre-serialised)."""
    return orjson.loads(orjson.dumps(body))
