"""Quota windows per key of `api_keys`, over real HTTP: a key whose quota is used up is skipped
until its window resets while the provider's other keys serve; the provider is used up (and
the route's next target serves) only when all its keys are; `/v1/quota` shows each key by its
place in the list, never its value; the marks come back after a restart."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from tests.conftest import Gateway, GatewayFactory, stop_process
from tests.fakes import FakeOpenAI, Reply
from tests.providers.test_credentials import KeyedOpenAI, assert_no_key_shown, provider

pytestmark = [pytest.mark.gateway]

ONE, TWO = "sk-quota-ONE-SECRET-1111", "sk-quota-TWO-SECRET-2222"
SPENT = Reply(status=402, error="Insufficient Balance")  # DeepSeek's word for it
# Seconds a used-up key rests: long enough for the checks and a restart on a busy machine
# (the marks must still hold after it), short enough to wait for.
WINDOW = 8


async def ask(gw: Gateway) -> tuple[int, dict[str, str], Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    async with aiohttp.ClientSession() as session, session.post(
        gw.url + "/v1/chat/completions", json=body
    ) as resp:
        return resp.status, dict(resp.headers), orjson.loads(await resp.read())


async def quota(gw: Gateway) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(gw.url + "/v1/quota") as resp:
        assert resp.status == 200
        raw = await resp.read()
    for key in (ONE, TWO):
        assert key.encode() not in raw
    return {p["name"]: p for p in orjson.loads(raw)["providers"]}


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def start(factory: GatewayFactory, keyed: KeyedOpenAI, spare: FakeOpenAI,
                db: Path) -> Gateway:
    return await factory(
        {"payg": provider(keyed, api_keys=[ONE, TWO], quota={"window": f"{WINDOW}s"}),
         "spare": spare.provider_config()},
        routes={"m": ["payg/model-p", "spare/model-s"]},
        extra={"storage": {"path": str(db)}})


async def test_a_used_up_key_rests_until_its_window_resets_and_the_others_serve(
    gateway_factory: GatewayFactory, tmp_path: Path,
) -> None:
    async with KeyedOpenAI(ONE, TWO) as keyed, FakeOpenAI(api_key="sk-spare") as spare:
        gw = await start(gateway_factory, keyed, spare, tmp_path / "state.db")

        # Key #0's balance is spent: the same request goes out on key #1 at once.
        keyed.queue(SPENT)
        status, headers, answer = await ask(gw)
        assert status == 200, answer
        assert headers["x-babelgate-target"] == "payg/model-p"
        assert keyed.keys_seen() == [ONE, TWO]
        marked_at = time.time()

        state = (await quota(gw))["payg"]
        assert state["state"] == "ok"  # one key left: the provider is not used up
        first, second = state["keys"]
        assert (first["key"], first["state"]) == ("#0", "exhausted")
        assert "Insufficient Balance" in first["reason"]
        assert abs(unix(first["resets_at"]) - (marked_at + WINDOW)) < 1.5
        assert second == {"key": "#1", "state": "ok", "since": None, "resets_at": None,
                          "reason": None}
        assert "keys" not in (await quota(gw))["spare"]  # one key: nothing per key

        # While it is used up, key #0 is never sent: key #1 serves every request.
        for _ in range(3):
            assert (await ask(gw))[0] == 200
        assert keyed.keys_seen()[2:] == [TWO, TWO, TWO]

        # Key #1 is spent too: now the provider is used up and the spare serves.
        keyed.queue(SPENT)
        spare.queue(Reply(text="From the spare."))
        status, headers, answer = await ask(gw)
        assert status == 200, answer
        assert headers["x-babelgate-target"] == "spare/model-s"
        state = (await quota(gw))["payg"]
        assert state["state"] == "exhausted"
        assert [k["state"] for k in state["keys"]] == ["exhausted", "exhausted"]
        # It comes back with its first key, not its last.
        assert state["resets_at"] == state["keys"][0]["resets_at"]
        sent = len(keyed.requests)
        assert (await ask(gw))[1]["x-babelgate-target"] == "spare/model-s"
        assert len(keyed.requests) == sent  # a used-up provider is not asked

        assert "provider payg: key #0 of api_keys used up until" in gw.log()
        await assert_no_key_shown(gw, ONE, TWO)

        # The marks outlive a restart.
        await stop_process(gw.process)
        gw = await start(gateway_factory, keyed, spare, tmp_path / "state.db")
        assert (await quota(gw))["payg"] == state

        # Key #0's window is over: the provider serves again, on key #0.
        await asyncio.sleep(max(0.0, unix(state["resets_at"]) - time.time()) + 0.7)
        status, headers, _ = await ask(gw)
        assert status == 200 and headers["x-babelgate-target"] == "payg/model-p"
        assert keyed.keys_seen()[-1] == ONE
        back = (await quota(gw))["payg"]
        assert back["state"] == "ok" and back["keys"][0]["state"] == "ok"
        await assert_no_key_shown(gw, ONE, TWO)


THREE = "sk-quota-THREE-SECRET-3333"


async def providers_health(gw: Gateway) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            gw.url + "/v1/providers") as resp:
        assert resp.status == 200
        raw = await resp.read()
    for key in (ONE, TWO, THREE):
        assert key.encode() not in raw
    return {p["name"]: p["health"] for p in orjson.loads(raw)["data"]}


def reorder(gw: Gateway, keys: list[str]) -> None:
    config = gw.config
    config["providers"]["payg"]["api_keys"] = keys
    gw.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


async def reload(gw: Gateway) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            gw.url + "/admin/reload") as resp:
        assert resp.status == 200, await resp.text()


async def test_a_refused_key_cools_and_marks_and_rests_stay_with_their_key_on_reload(
    gateway_factory: GatewayFactory, tmp_path: Path,
) -> None:
    async with KeyedOpenAI(ONE, TWO, THREE) as keyed, FakeOpenAI(api_key="sk-spare") as spare:
        gw = await gateway_factory(
            {"payg": provider(keyed, api_keys=[ONE, TWO, THREE], quota={"window": "1h"}),
             "spare": spare.provider_config()},
            routes={"m": ["payg/model-p", "spare/model-s"]},
            extra={"storage": {"path": str(tmp_path / "state.db")}})

        # ONE's balance is spent (a quota mark); TWO is refused (revoked upstream: it rests).
        keyed.queue(SPENT)
        keyed.keys.discard(TWO)
        status, headers, answer = await ask(gw)
        assert status == 200, answer
        assert headers["x-babelgate-target"] == "payg/model-p"
        assert keyed.keys_seen() == [ONE, TWO, THREE]
        state = (await quota(gw))["payg"]
        assert state["state"] == "ok"  # a key serves
        spent, cooling, serving = state["keys"]
        assert (spent["key"], spent["state"]) == ("#0", "exhausted")
        assert (cooling["key"], cooling["state"]) == ("#1", "cooling")
        assert cooling["reason"] == "refused (HTTP 401)"
        assert 50 < unix(cooling["resets_at"]) - unix(cooling["since"]) <= 61  # a minute
        assert serving == {"key": "#2", "state": "ok", "since": None, "resets_at": None,
                           "reason": None}
        # /v1/providers shows the provider's health as /v1/quota does, keys included.
        assert (await providers_health(gw))["payg"] == {
            k: v for k, v in state.items() if k != "name"}

        # TWO is accepted again upstream, but rests its minute: only THREE is sent.
        keyed.keys.add(TWO)
        for _ in range(2):
            assert (await ask(gw))[0] == 200
        assert keyed.keys_seen()[3:] == [THREE, THREE]

        # The list is edited and reloaded: THREE first, ONE last. The mark stays with ONE and
        # the rest with TWO, wherever they now stand.
        reorder(gw, [THREE, TWO, ONE])
        await reload(gw)
        keys = (await quota(gw))["payg"]["keys"]
        assert [(k["key"], k["state"]) for k in keys] == [
            ("#0", "ok"), ("#1", "cooling"), ("#2", "exhausted")]
        assert keys[1]["resets_at"] == cooling["resets_at"]
        assert keys[2]["resets_at"] == spent["resets_at"]
        for _ in range(3):
            assert (await ask(gw))[0] == 200
        assert keyed.keys_seen()[5:] == [THREE, THREE, THREE]

        # THREE is spent too: ONE is used up and TWO rests, so this request moves to the
        # route's next target (the provider is not used up: TWO has quota left).
        keyed.queue(SPENT)
        status, headers, answer = await ask(gw)
        assert status == 200, answer
        assert headers["x-babelgate-target"] == "spare/model-s"
        assert keyed.keys_seen()[8:] == [THREE]
        assert (await quota(gw))["payg"]["state"] == "ok"
        await assert_no_key_shown(gw, ONE, TWO, THREE)

        # A restart keeps the marks under the keys' ids (rests are this process's own).
        await stop_process(gw.process)
        gw = await gateway_factory(
            {"payg": provider(keyed, api_keys=[TWO, ONE, THREE], quota={"window": "1h"}),
             "spare": spare.provider_config()},
            routes={"m": ["payg/model-p", "spare/model-s"]},
            extra={"storage": {"path": str(tmp_path / "state.db")}})
        assert [(k["key"], k["state"]) for k in (await quota(gw))["payg"]["keys"]] == [
            ("#0", "ok"), ("#1", "exhausted"), ("#2", "exhausted")]
        assert (await ask(gw))[0] == 200
        assert keyed.keys_seen()[-1] == TWO
