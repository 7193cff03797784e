"""Keeping a client's stream alive while its upstream has not begun to answer.

An upstream may be slow to start (a queue, a cold model, a long prompt read first) while the
client's own idle timer is shorter than babelgate's upstream `timeout` (600 s by default), so
the client would give up on a stream that has not even sent its headers. After `interval`
seconds without an answer, the client's stream is opened (200 and the event-stream head) with
the protocol's keep-alive (an Anthropic `ping` event, an SSE comment for OpenAI's protocols;
clients reset their idle timer on either), written again every `interval` until the answer's
first bytes, or its error, arrive.

What the client then sees: an answer or error that comes sooner than `interval` is not
changed (errors keep their HTTP status); after it, an error ends the open stream as the
protocol's error event, and the `x-babelgate-target` header is missing (the target was not
known when the head went out). Fallbacks work the same: the stream is open, but nothing of
an answer was sent.

Cost: one timer for all the streams of the app, ticking only while some stream waits, so a
stream that opens in time costs a set insertion and removal (a timer per stream, started and
cancelled, took ~4 µs on uvloop).
"""

from __future__ import annotations

import asyncio

from .exchange import Headers, Response

TICKS_PER_INTERVAL = 4  # a keep-alive goes out at most a quarter interval late


class KeepAlive:
    """One stream waiting for its upstream; `stop` once its opening (or error) is known."""

    __slots__ = ("_beat", "_headers", "_owner", "_response", "_writing", "due", "opened")

    def __init__(self, owner: KeepAlives, response: Response, headers: Headers, beat: bytes,
                 due: float) -> None:
        self._owner = owner
        self._response = response
        self._headers = headers
        self._beat = beat
        self._writing: asyncio.Task[None] | None = None
        self.due = due  # loop time of the next keep-alive
        self.opened = False  # the client's stream is open: its head went out

    def beat(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Open the stream if need be and write a keep-alive; False when the client is gone
        (nothing more to keep alive)."""
        response = self._response
        if response.client_gone or response.finished:
            return False
        if not self.opened:
            self.opened = True
            response.start(200, self._headers)
        # Written by `write`, which delivers under every server (an ASGI adapter's `start`
        # only queues the head). A client too slow to take the last one needs no other.
        if self._writing is None or self._writing.done():
            self._writing = loop.create_task(response.write(self._beat))
        return True

    def stop(self) -> None:
        """No more keep-alives: what comes next is the answer, or its error."""
        self._owner.waiting.discard(self)
        writing, self._writing = self._writing, None
        if writing is not None and not writing.done():
            # Its bytes went out when it ran (a write hands them over before it waits), or it
            # never ran and sends nothing: nothing is written after the answer starts.
            writing.cancel()


class KeepAlives:
    """The app's streams waiting for their upstreams, and the one timer that keeps them alive.
    `interval` seconds (0: never)."""

    __slots__ = ("_loop", "_timer", "interval", "waiting")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.waiting: set[KeepAlive] = set()
        self._timer: asyncio.TimerHandle | None = None
        # The app's loop, found at the first stream: asyncio.get_running_loop() is a getpid()
        # system call per call on Python 3.11, and this runs for every stream.
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, response: Response, headers: Headers, beat: bytes) -> KeepAlive:
        """Keep `response` alive from `interval` seconds on, until the KeepAlive is stopped."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        keepalive = KeepAlive(self, response, headers, beat, loop.time() + self.interval)
        if self.interval > 0:
            self.waiting.add(keepalive)
            if self._timer is None:
                self._timer = loop.call_later(self.interval / TICKS_PER_INTERVAL, self._tick)
        return keepalive

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None  # set by the `watch` that started the timer
        now = loop.time()
        for keepalive in [k for k in self.waiting if k.due <= now]:
            if keepalive.beat(loop):
                keepalive.due = now + self.interval
            else:
                self.waiting.discard(keepalive)
        # Ticking only while some stream waits: an idle gateway has no timer.
        self._timer = (loop.call_later(self.interval / TICKS_PER_INTERVAL, self._tick)
                       if self.waiting else None)
