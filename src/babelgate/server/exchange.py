"""What a handler of the app answers through: the interface both servers implement.

The app (server/app.py) reads a plain `Request` (server/http.py) and answers through a
`Response`: `send` a whole response, or `start` a stream, `write` to it and `end` it. Our own
HTTP server (server/http.py) implements it on its connections; the ASGI adapter
(server/asgi.py) on an ASGI server's `send`. The app depends on this interface only, so the
same handlers run under either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

Headers = Sequence[tuple[bytes, bytes]]


class Response(Protocol):
    """How a handler answers its request. `send`, `start` and `end` do not wait (a server
    may write their bytes later in the same turn of the event loop); `write` waits while the
    client cannot take more. Writing to a client that has gone does nothing: its request's
    task is being cancelled."""

    started: bool  # the status line is decided (send or start was called)
    finished: bool  # the whole answer is given (send, or end after start)

    @property
    def client_gone(self) -> bool: ...

    def send(self, status: int, body: bytes, headers: Headers) -> None:
        """The whole response."""

    def start(self, status: int, headers: Headers, first: bytes = b"") -> None:
        """Begin a stream of unknown length, `first` being its first bytes."""

    async def write(self, data: bytes) -> None:
        """More of a started stream."""

    def end(self, tail: bytes = b"") -> None:
        """Finish a started stream, `tail` being its last bytes."""
