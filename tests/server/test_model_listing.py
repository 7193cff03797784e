"""GET /v1/models for a configuration of glob routes, over real HTTP: a picker (Claude Code's
reads Anthropic's shape) is offered the catalogue's concrete model ids each glob decides,
with where each goes, and every id listed is one a request can use, through the route the
listing names."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI

from babelgate.books.prices import catalogue_model_ids

pytestmark = [pytest.mark.gateway]

ROUTES = {
    "claude-*opus*": "ds/big-model",
    "claude-*": "ds/small-model",
    "deepseek-*": "ds",  # the client's own name, to the same provider
    "my-coder": "ds/coder-model",
    "*": "ds/anything",  # a catch-all: like `default`, it offers no names
}
ANTHROPIC = {"content-type": "application/json", "x-api-key": "client-key",
             "anthropic-version": "2023-06-01"}


async def get_json(url: str, headers: dict[str, str]) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        assert r.status == 200
        return await r.json()


async def test_glob_routes_offer_the_catalogue_ids_and_each_one_routes(
    gateway_factory: GatewayFactory,
) -> None:
    async with FakeOpenAI() as fake:
        gw = await gateway_factory({"ds": fake}, routes=ROUTES)
        listed = await get_json(gw.url + "/v1/models", ANTHROPIC)
        plain = await get_json(gw.url + "/v1/models", {})
        described = {m["id"]: m["description"] for m in listed["data"]}

        ids = list(described)
        assert [m["id"] for m in plain["data"]] == ids  # one list, two shapes
        assert len(set(ids)) == len(ids)
        assert not any("*" in name for name in ids)
        # Exact names and targets first, then what each glob decides, first glob first.
        assert ids[:5] == ["my-coder", "ds/big-model", "ds/small-model", "ds/coder-model",
                           "ds/anything"]
        assert described["claude-opus-4-8"] == "routed to ds/big-model by claude-*opus*"
        assert described["claude-sonnet-4-5"] == "routed to ds/small-model by claude-*"
        assert described["deepseek-chat"] == "routed to ds/deepseek-chat by deepseek-*"
        assert described["ds/big-model"] == "routed to ds/big-model directly"
        claude = [name for name in catalogue_model_ids() if name.startswith("claude-")]
        assert [name for name in ids if name.startswith("claude-")] == claude
        # The catch-all offers nothing of its own: no OpenAI ids although `*` takes them.
        assert "gpt-5" not in ids and "gpt-5" in catalogue_model_ids()

        async with aiohttp.ClientSession() as session:
            for name, description in described.items():
                body = {"model": name, "max_tokens": 16,
                        "messages": [{"role": "user", "content": "hi"}]}
                async with session.post(gw.url + "/v1/messages", data=orjson.dumps(body),
                                        headers=ANTHROPIC) as r:
                    assert r.status == 200, (name, await r.text())
                    route = r.headers["x-babelgate-route"]
                target, _, how = description.removeprefix("routed to ").partition(" ")
                assert route == ("direct" if how == "directly"
                                 else "route:" + how.removeprefix("by ")), name
                assert fake.requests[-1].body["model"] == target.removeprefix("ds/"), name
