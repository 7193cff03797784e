"""Running an async test on each event loop the gateway may meet: asyncio's own and uvloop
(the one it runs on). Code that sits directly on transports and protocols (our HTTP server and
client) must work on both, and the two loops implement those separately.

Tests are plain functions wrapped by `on_each_loop` rather than pytest-asyncio tests: the
wrapper picks the loop and puts a deadline on the whole test, so code that hangs fails its
test instead of the run.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

TEST_DEADLINE = 5.0  # seconds a whole test may take before it counts as hung

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
Scenario = Callable[..., Coroutine[Any, Any, None]]


def loop_test(scenario: Scenario, loops: dict[str, Callable[[], asyncio.AbstractEventLoop]],
              ) -> Any:
    """A pytest test that runs the async `scenario` on each of `loops`, passing on the
    fixtures the scenario asks for (monkeypatch, parametrize values)."""

    def test(loop: str, **fixtures: Any) -> None:
        with asyncio.Runner(loop_factory=loops[loop]) as runner:
            runner.run(asyncio.wait_for(scenario(**fixtures), TEST_DEADLINE))

    params = [inspect.Parameter("loop", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              *inspect.signature(scenario).parameters.values()]
    test.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    test.__name__ = scenario.__name__
    test.__doc__ = scenario.__doc__
    return pytest.mark.parametrize("loop", list(loops))(test)


def on_each_loop(scenario: Scenario) -> Any:
    return loop_test(scenario, LOOP_FACTORIES)


def on_asyncio_loop(scenario: Scenario) -> Any:
    return loop_test(scenario, {"asyncio": asyncio.new_event_loop})
