"""server/memory.py: the collector that frees cyclic garbage on a clock, whatever the
garbage collector's thresholds (App.start sets them too high to count on)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from tests.loops import on_asyncio_loop

from babelgate.server.memory import Collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: reference counting alone never frees it
        self.body = b"x" * 1_000_000


@on_asyncio_loop
async def test_the_collector_frees_cyclic_garbage_on_its_clock() -> None:
    gc.disable()  # only the collector may collect here
    collector = Collector(interval=0.05)
    try:
        node = Node()
        gone = weakref.ref(node)
        del node
        await asyncio.sleep(0.01)
        assert gone() is not None  # nothing collected it yet
        collector.start()
        for _ in range(40):
            await asyncio.sleep(0.025)
            if gone() is None:
                break
        assert gone() is None
        collector.stop()
        node = Node()
        gone = weakref.ref(node)
        del node
        await asyncio.sleep(0.2)
        assert gone() is not None  # stopped: it runs no more
    finally:
        collector.stop()
        gc.enable()
        gc.collect()
