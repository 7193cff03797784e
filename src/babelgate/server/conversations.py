"""Server-side conversation state for Responses clients (`previous_response_id`, `store`).

What this module promises:
- `Conversations.prepare(body)` runs before the body is parsed. A body naming
  `previous_response_id` gets `input` = that response's input + its output + the new input
  (`instructions` are not inherited, as in OpenAI's API); an unknown or expired id raises
  `PreviousResponseNotFound` (404, `previous_response_not_found`).
- A body with `store: false` and no `previous_response_id` never touches the store; other
  protocols never reach this module at all.
- With `store` not false, `prepare` returns a `Recorder`. It takes the response the client
  receives (found by the protocol's `FinalResponse`) and puts it into the store before the
  last bytes reach the client, so the client's next request finds it. The write itself
  happens off the request path (see `ResponseStore.put`).
"""

from __future__ import annotations

import time

from babelgate.canonical import GatewayError
from babelgate.protocols.openai_responses.recorder import FinalResponse, input_items
from babelgate.storage.responses import JSON, ResponseStore, StoredResponse


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


class Recorder:
    """Takes the response a client receives and keeps it with the input that led to it."""

    __slots__ = ("_final", "_input", "_store", "kept")

    def __init__(self, store: ResponseStore, items: list[JSON]) -> None:
        self._store = store
        self._input = items
        self._final = FinalResponse()
        self.kept: str | None = None  # the id kept, once kept

    def whole(self, body: bytes) -> None:
        """A non-streamed response body."""
        self._keep(self._final.whole(body))

    def feed(self, chunk: bytes) -> None:
        """A chunk of the stream, in order."""
        if self.kept is None:
            self._keep(self._final.feed(chunk))

    def _keep(self, response: JSON | None) -> None:
        if response is None:
            return
        rid: str = response["id"]  # FinalResponse only gives objects with a string id
        self._store.put(StoredResponse(rid, time.time(), self._input, response))
        self.kept = rid
