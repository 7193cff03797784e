"""The background loop the gateway keys and the shared routing state are read by: it runs its
work every so often, survives the failures it is told to expect (saying which is the first of
a run, and when it recovers), and stops when asked."""

from __future__ import annotations

import asyncio

from babelgate.server.periodic import Periodic


async def test_runs_again_and_again_says_the_first_failure_and_the_recovery() -> None:
    outcomes = iter([None, OSError("away"), OSError("still away"), None, None])
    runs: list[str] = []
    heard: list[tuple[str, bool]] = []

    async def work() -> None:
        runs.append("run")
        outcome = next(outcomes, None)
        if outcome is not None:
            raise outcome

    loop = Periodic(work, 0.01, errors=(OSError,),
                    failed=lambda exc, first: heard.append((str(exc), first)),
                    recovered=lambda: heard.append(("back", False)))
    loop.start()
    while len(runs) < 5:
        await asyncio.sleep(0.01)
    await loop.stop()
    done = len(runs)
    assert heard[:3] == [("away", True), ("still away", False), ("back", False)]
    await asyncio.sleep(0.05)
    assert len(runs) == done  # stopped: no run after
    await loop.stop()  # twice is fine

