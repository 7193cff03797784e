"""Server-side conversation state for Responses clients (`previous_response_id`, `store`).

What this module promises:
- `Conversations.prepare(body, owner)` runs before the body is parsed. A body naming
  `previous_response_id` gets `input` = every stored turn of that conversation (each turn's
  input, then its output, oldest first) + the new input (`instructions` are not inherited,
  as in OpenAI's API). An unknown or expired id, or a conversation one of whose earlier
  turns was deleted, raises `PreviousResponseNotFound` (404, `previous_response_not_found`);
  one longer than the store's `max_turns` is refused (400). Only `owner`'s responses are
  found: another owner's id is as unknown as one never issued.
- A body with `store: false` and no `previous_response_id` never touches the store; other
  protocols never reach this module at all.
- With `store` not false, `prepare` returns a `Recorder`. It takes the response the client
  receives (found by the protocol's `FinalResponse`) and puts it into the store with only
  this request's own input, the id it continued and its owner, before the last bytes reach
  the client, so the client's next request finds it. The write itself happens off the
  request path (see `ResponseStore.put`).
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

    async def prepare(self, body: JSON, owner: str | None) -> tuple[JSON, Recorder | None]:
        """The body to parse (history expanded) and the recorder for its response, if any."""
        previous = body.get("previous_response_id")
        if not (isinstance(previous, str) and previous):
            previous = None
        keep = body.get("store") is not False
        if previous is None and not keep:
            return body, None
        items = input_items(body.get("input"))
        if items is None:  # not a valid input: parse_request names the problem
            return body, None
        if previous is not None:
            body = {**body, "input": [*await self.history(previous, owner), *items]}
        return body, Recorder(self.store, items, previous, owner) if keep else None

    async def history(self, rid: str, owner: str | None) -> list[JSON]:
        """The items of every turn up to and including `owner`'s response `rid`, oldest
        first."""
        turns = await self.store.chain(rid, owner)
        if turns is None:
            raise PreviousResponseNotFound(rid)
        missing = turns[0].previous
        if missing is not None:
            if len(turns) >= self.store.max_turns:
                raise GatewayError(
                    "invalid_request",
                    f"The conversation of response '{rid}' has more than "
                    f"{self.store.max_turns} stored turns; start a new one with the full input.",
                    param="previous_response_id",
                )
            raise PreviousResponseNotFound(missing)  # deleted: the history has a hole
        return [item for turn in turns for item in (*turn.input, *turn.output)]


class Recorder:
    """Takes the response a client receives and keeps it with the input this request added."""

    __slots__ = ("_final", "_input", "_owner", "_previous", "_store", "kept")

    def __init__(
        self, store: ResponseStore, items: list[JSON], previous: str | None, owner: str | None
    ) -> None:
        self._store = store
        self._input = items
        self._previous = previous
        self._owner = owner
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
        self._store.put(StoredResponse(
            rid, time.time(), self._input, response, self._previous, self._owner
        ))
        self.kept = rid
