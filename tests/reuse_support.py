"""What the reuse tests (tests/test_reuse*.py) share."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from babelgate.protocols.reuse import Reuse


@pytest.fixture
def table() -> Reuse:
    """A reuse table of the test's own, as the app makes one per caller: a piece kept by
    another test cannot decide what this one finds."""
    return Reuse()


def wire(body: Any) -> Any:
    """A rendered body as the upstream receives it (shared pieces go pre-serialised)."""
    return orjson.loads(orjson.dumps(body))
