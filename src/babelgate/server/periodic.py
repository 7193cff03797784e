"""Work that runs again and again in the background: a store read every so often.

The gateway keys (auth.py) and what other processes learnt about routing (shared_routing.py)
are each read anew every fraction of a second; both need the same loop, started with the
server and stopped with it. What this module promises:
- `Periodic(work, every, ...)`: after `start()`, `work()` runs every `every` seconds (a sleep
  between the end of one run and the start of the next, so runs never overlap) until
  `stop()`, which cancels the sleep or the run under way and waits for it to end.
- A run that raises one of `errors` (a store away) does not end the loop: `failed(exc,
  first)` hears it (`first`: the first failure since the last success, so that a caller can
  log once rather than twice a second), and `recovered()` the first success after
  failures. Any other exception ends the loop, as a bug should.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Periodic:
    def __init__(
        self, work: Callable[[], Awaitable[object]], every: float, *,
        errors: tuple[type[BaseException], ...],
        failed: Callable[[BaseException, bool], None],
        recovered: Callable[[], None] | None = None,
    ) -> None:
        self.work = work
        self.every = every
        self.errors = errors
        self.failed = failed
        self.recovered = recovered
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin the loop (on the running event loop); the first run is `every` from now."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """End the loop; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.work()
            except self.errors as exc:
                self.failed(exc, not failing)
                failing = True
            else:
                if failing and self.recovered is not None:
                    self.recovered()
                failing = False
