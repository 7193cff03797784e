"""Memory under many open streams: open N streaming requests at once and measure the server.

`python bench/slow_streams.py URL BODY_FILE PID [N] [DEADLINE_S]` measures the total RSS of
process PID and all its descendants while idle, then opens N concurrent POSTs of BODY_FILE to
URL (loopback only), waits until every one has its status line and first bytes (or the
deadline passes), samples the RSS again a few times while all are open, closes them, and
prints one JSON line: {"idle_kb", "open_kb" (settled), "peak_kb", "opened", "failed",
"seconds"}.
The upstream behind URL must stream slowly (bench/nginx.conf's slow port) so that streams stay
open for the whole measurement. The whole run is bounded by DEADLINE_S (default 40 s).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

HOLD_SECONDS = 3.0  # how long all streams stay open while RSS is sampled
SAMPLES = 12
SETTLE_SECONDS = 1.0  # samples after this much holding count as the settled figure


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def tree_rss_kb(pid: int) -> int:
    """VmRSS of `pid` and every descendant, in KiB (0 for processes that are gone)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
        pending += _children(current)
    return total


async def _open_one(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    opened: asyncio.Queue[bool],
    release: asyncio.Event,
) -> None:
    """One stream: report once the first bytes arrive, then hold it open until released."""
    try:
        async with session.post(url, data=body, headers=_HEADERS) as response:
            if response.status != 200:
                await opened.put(False)
                return
            await response.content.readany()
            await opened.put(True)
            await release.wait()
    except (TimeoutError, aiohttp.ClientError, OSError):
        await opened.put(False)


_HEADERS = {
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "x-api-key": "bench-key",
}


async def measure(url: str, body: bytes, pid: int, count: int, deadline: float) -> dict[str, float]:
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("slow_streams.py only talks to loopback addresses")
    started = time.monotonic()
    idle_kb = tree_rss_kb(pid)
    opened: asyncio.Queue[bool] = asyncio.Queue()
    release = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    ok = failed = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(_open_one(session, url, body, opened, release))
                 for _ in range(count)]
        while ok + failed < count:
            left = deadline - (time.monotonic() - started) - HOLD_SECONDS - 1
            if left <= 0:
                break
            try:
                if await asyncio.wait_for(opened.get(), timeout=left):
                    ok += 1
                else:
                    failed += 1
            except TimeoutError:
                break
        # `peak`: the highest RSS while all streams are open, right after a burst of opening
        # them included; `settled`: the highest once they have been open SETTLE_SECONDS (what
        # 1,000 open streams cost, after memory freed by the burst went back to the system).
        peak = settled = 0
        held = time.monotonic()
        for _ in range(SAMPLES):
            rss = tree_rss_kb(pid)
            peak = max(peak, rss)
            if time.monotonic() - held >= SETTLE_SECONDS:
                settled = max(settled, rss)
            await asyncio.sleep(HOLD_SECONDS / SAMPLES)
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"idle_kb": idle_kb, "open_kb": settled, "peak_kb": peak, "opened": ok,
            "failed": failed,
            "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    if len(sys.argv) < 4:
        raise SystemExit("usage: slow_streams.py URL BODY_FILE PID [N] [DEADLINE_S]")
    url, body_file, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    deadline = float(sys.argv[5]) if len(sys.argv) > 5 else 40.0
    body = Path(body_file).read_bytes()
    result = asyncio.run(measure(url, body, pid, count, deadline))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
