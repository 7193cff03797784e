"""What the reuse tests (tests/test_reuse*.py) share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from babelgate import reuse


@pytest.fixture
def empty_reuse_table() -> Iterator[None]:
    """The process-wide reuse table, empty before and after the test: a piece kept by
    another test must not decide what this one finds."""
    reuse.REUSE.clear()
    yield
    reuse.REUSE.clear()


def wire(body: Any) -> Any:
    """A rendered body as the upstream receives it (shared pieces go pre-serialised)."""
    return orjson.loads(orjson.dumps(body))
