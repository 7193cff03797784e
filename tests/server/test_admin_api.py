"""The admin JSON API (/admin/api/...) over real HTTP after scripted traffic through the
gateway: its numbers, the CLI's agreement with it, keys created and revoked through it, and
its refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from tests.admin_support import (
    REFUSED_MODEL,
    admin_get,
    expected_totals,
    scripted_traffic,
    wait_for_key,
    wait_for_rows,
)
from tests.conftest import Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.fakes.core import Reply
from tests.keys_support import keys_cli

pytestmark = [pytest.mark.gateway]


async def admin_post(gw: Gateway, path: str, key: str | None,
                     body: bytes | dict[str, Any]) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with aiohttp.ClientSession() as session, session.post(
            gw.url + path, data=data, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


def cli(gw: Gateway, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "babelgate", *args, "--config", str(gw.config_path)],
        check=True, capture_output=True, text=True, timeout=60)
    return orjson.loads(done.stdout)


@pytest.fixture
async def traffic(gateway_factory: GatewayFactory, fake_openai: FakeOpenAI,
                  fake_anthropic: FakeAnthropic, tmp_path: Path) -> tuple[Gateway, str, str]:
    return await scripted_traffic(gateway_factory, fake_openai, fake_anthropic,
                                  tmp_path / "gw.db")


async def test_usage_matches_the_script_and_the_cli(traffic: tuple[Gateway, str, str]) -> None:
    gw, admin, _ = traffic
    expected = expected_totals()
    summary = await wait_for_rows(gw, admin, expected["requests"])
    total = summary["total"]
    assert total["requests"] == expected["requests"]
    assert (total["input_tokens"], total["output_tokens"]) == (
        expected["input_tokens"], expected["output_tokens"])
    assert total["cost"] == pytest.approx(expected["cost"])
    groups = {g["name"]: g for g in summary["groups"]}
    assert groups["oa/gpt-test"]["requests"] == 3
    assert groups["an/claude-sonnet-4-5"]["requests"] == 2
    assert groups["(refused)"]["requests"] == 1

    # `babelgate usage --json` runs the same query: the same groups and totals.
    for by in ("day", "model", "key", "provider"):
        status, api = await admin_get(gw, f"/admin/api/usage?by={by}&since=1d", admin)
        assert status == 200, api
        printed = cli(gw, "usage", "--json", "--by", by, "--since", "1d")
        assert (api["groups"], api["total"]) == (printed["groups"], printed["total"]), by
    _, by_key = await admin_get(gw, "/admin/api/usage?by=key", admin)
    assert [g["name"] for g in by_key["groups"]] == ["alice"]  # names, never key ids

    _, series = await admin_get(gw, "/admin/api/usage/series?since=1h&buckets=12", admin)
    assert series["step_s"] == 300
    assert sum(p["requests"] for p in series["points"]) == expected["requests"]
    assert sum(p["input_tokens"] for p in series["points"]) == expected["input_tokens"]
    assert sum(p["cost"] for p in series["points"]) == pytest.approx(expected["cost"])


async def test_recent_requests_newest_first(traffic: tuple[Gateway, str, str]) -> None:
    gw, admin, _ = traffic
    await wait_for_rows(gw, admin, expected_totals()["requests"])
    status, body = await admin_get(gw, "/admin/api/requests?limit=4", admin)
    assert status == 200, body
    rows = body["data"]
    assert len(rows) == 4
    refused = rows[0]
    assert (refused["model"], refused["target"], refused["status"]) == (REFUSED_MODEL, None, 404)
    latest = rows[1]
    assert latest["target"] == "an/claude-sonnet-4-5"
    assert (latest["input_tokens"], latest["output_tokens"]) == (300, 60)
    assert (latest["client"], latest["key"], latest["status"]) == ("anthropic-sdk", "alice", 200)
    assert latest["latency_ms"] >= 0
    assert rows[3]["client"] == "openai-sdk"
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)


async def test_keys_created_and_revoked_through_the_api(
    traffic: tuple[Gateway, str, str], fake_openai: FakeOpenAI,
) -> None:
    gw, admin, _ = traffic
    await wait_for_rows(gw, admin, expected_totals()["requests"])  # spend is in the listing
    status, listed = await admin_get(gw, "/admin/api/keys", admin)
    assert status == 200
    assert listed["data"] == cli(gw, "keys", "list", "--json")  # the same listing
    assert {k["name"] for k in listed["data"]} == {"ops", "alice"}
    assert not any("hash" in k for k in listed["data"])

    status, made = await admin_post(gw, "/admin/api/keys", admin,
                                    {"name": "bob", "models": ["gpt-*"], "rpm": 60})
    assert status == 201, made
    key = made["key"]
    assert made["record"]["name"] == "bob" and made["record"]["models"] == ["gpt-*"]
    # Obeyed at once: the new key is good for a request straight away.
    fake_openai.queue(Reply(text="hello bob"))
    async with aiohttp.ClientSession() as session, session.post(
            gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["choices"][0]["message"]["content"] == "hello bob"
    _, listed = await admin_get(gw, "/admin/api/keys", admin)
    assert key not in orjson.dumps(listed).decode()

    status, body = await admin_post(gw, "/admin/api/keys", admin, {"name": "bob"})
    assert status == 409 and body["error"]["param"] == "name"

    status, body = await admin_post(gw, "/admin/api/keys/revoke", admin, {"name": "bob"})
    assert (status, body) == (200, {"revoked": "bob"})
    await wait_for_key(gw, key, 401)
    status, body = await admin_post(gw, "/admin/api/keys/revoke", admin, {"name": "bob"})
    assert status == 404
    _, everything = await admin_get(gw, "/admin/api/keys?all=true", admin)
    assert any(k["name"] == "bob" and k["revoked_at"] for k in everything["data"])
    assert "bob" in keys_cli(gw.config_path, "list", "--all").stdout


async def test_refusals(traffic: tuple[Gateway, str, str]) -> None:
    gw, admin, user = traffic
    status, body = await admin_get(gw, "/admin/api/usage", None)
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, body = await admin_get(gw, "/admin/api/usage", user)
    assert status == 403 and "admin" in body["error"]["message"]
    for path, param in (("/admin/api/usage?since=yesterday", "since"),
                        ("/admin/api/usage?by=colour", "by"),
                        ("/admin/api/requests?limit=many", "limit"),
                        ("/admin/api/usage/series?buckets=0", "buckets")):
        status, body = await admin_get(gw, path, admin)
        assert status == 400, (path, body)
        assert body["error"]["param"] == param
    for payload, message in ((b"{not json", "not valid JSON"), (b"[1]", "JSON object"),
                             ({"name": ""}, "`name`"), ({"name": "x", "rpm": -1}, "rpm"),
                             ({"name": "x", "expires": "soon"}, "expires"),
                             ({"name": "x", "per": "day"}, "`per` needs `budget`")):
        status, body = await admin_post(gw, "/admin/api/keys", admin, payload)
        assert status == 400, (payload, body)
        assert message in body["error"]["message"]
