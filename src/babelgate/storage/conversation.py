"""Server-side conversation state for Responses clients (`previous_response_id`, `store`).

What this module promises:
- `Conversations.prepare(body)` runs before the body is parsed. A body naming
  `previous_response_id` gets `input` = that response's input + its output + the new input
  (`instructions` are not inherited, as in OpenAI's API); an unknown or expired id raises
  `PreviousResponseNotFound` (404, `previous_response_not_found`).
- A body with `store: false` and no `previous_response_id` never touches the store; other
  protocols never reach this module at all.
- With `store` not false, `prepare` returns a `Recorder`. It takes the response object the
  client receives (the JSON body, or the one carried by a stream's final
  `response.completed`/`response.incomplete` event) and puts it into the store before the
  last bytes reach the client, so the client's next request finds it. Failed responses are
  not kept.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from babelgate.canonical import GatewayError
from babelgate.protocols.sse import SSEDecoder

from .responses import JSON, ResponseStore, StoredResponse

# The events whose `response` is final and worth continuing from. One compiled pattern
# scans a chunk once (about twice as fast as two `in` tests).
_FINAL_MARK = re.compile(rb"event: response\.(?:completed|incomplete)\n")
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})
_KEPT_STATUSES = frozenset({"completed", "incomplete"})


class PreviousResponseNotFound(GatewayError):
    def __init__(self, rid: str) -> None:
        super().__init__(
            "not_found",
            f"Previous response with id '{rid}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )


class Conversations:
    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    async def prepare(self, body: JSON) -> tuple[JSON, Recorder | None]:
        """The body to parse (history expanded) and the recorder for its response, if any."""
        previous = body.get("previous_response_id")
        keep = body.get("store") is not False
        if not (isinstance(previous, str) and previous) and not keep:
            return body, None
        items = input_items(body.get("input"))
        if items is None:  # not a valid input: parse_request names the problem
            return body, None
        if isinstance(previous, str) and previous:
            stored = await self.store.get(previous)
            if stored is None:
                raise PreviousResponseNotFound(previous)
            items = [*stored.input, *stored.output, *items]
            body = {**body, "input": items}
        return body, Recorder(self.store, items) if keep else None


def input_items(raw: Any) -> list[JSON] | None:
    """`input` as a list of items: a string is one user message."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": raw}]}]
    if isinstance(raw, list):
        return raw
    return None


class Recorder:
    """Takes the response a client receives and keeps it with the input that led to it."""

    __slots__ = ("_input", "_store", "_tail", "kept")

    def __init__(self, store: ResponseStore, items: list[JSON]) -> None:
        self._store = store
        self._input = items
        self._tail: bytes | None = None  # the stream from its final event on
        self.kept: str | None = None  # the id kept, once kept

    def whole(self, body: bytes) -> None:
        """A non-streamed response body."""
        try:
            response = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(response, dict):
            self._keep(response)

    def feed(self, chunk: bytes) -> None:
        """A chunk of the stream, in order. Only the final event is parsed: each chunk is
        searched for its `event:` line (a byte search), so the rest of the stream costs
        almost nothing."""
        if self.kept is not None:
            return
        if self._tail is None:
            found = _FINAL_MARK.search(chunk)
            if found is None:
                return
            self._tail = chunk[found.start():]
        else:  # the final event was split over chunks (not by our encoder, but be safe)
            self._tail += chunk
        response = _final_response(self._tail)
        if response is not None:
            self._keep(response)

    def _keep(self, response: JSON) -> None:
        rid = response.get("id")
        if not isinstance(rid, str) or response.get("status") not in _KEPT_STATUSES:
            return
        self._store.put(StoredResponse(rid, time.time(), self._input, response))
        self.kept = rid


def _final_response(tail: bytes) -> JSON | None:
    for event in SSEDecoder().feed(tail):
        if event.event not in _FINAL_EVENTS:
            continue
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return None
        response = payload.get("response") if isinstance(payload, dict) else None
        return response if isinstance(response, dict) else None
    return None
