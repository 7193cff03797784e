"""The dashboard (/ui) in a real Chromium (Debian's `chromium`, driven by Playwright): it loads
without a console error, shows the numbers the usage API gives after scripted traffic through
the gateway, and creates and revokes keys that the gateway then accepts and refuses.

Screenshots go to build/screenshots/ for a developer to look at; docs/dashboard.png is
`test_screenshot_of_a_busy_week`'s, copied there by hand when the page changes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from tests.admin_support import (
    admin_get,
    expected_totals,
    keyed_gateway,
    scripted_traffic,
    wait_for_key,
    wait_for_rows,
)
from tests.conftest import ROOT, Gateway, GatewayFactory
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.fakes.core import Reply, Usage
from tests.keys_support import create, keys_cli
from yarl import URL

from babelgate.books.record import UsageRecord
from babelgate.books.store import UsageSink
from babelgate.storage.database import open_database
from babelgate.storage.url import StorageURL
from babelgate.storage.usage import UsageWriter

pytestmark = [pytest.mark.gateway]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "build" / "screenshots"
NONE = "\N{EN DASH}"  # what the page shows for "none" or "not known"
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (scripts/chromium.sh)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        await browser.close()


class Console:
    """Every console error and uncaught exception of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


async def open_dashboard(browser: Browser, gw: Gateway, admin: str) -> tuple[Page, Console]:
    """The page as a user meets it: asked for an admin key, then the board."""
    page = await browser.new_page(viewport=VIEWPORT)
    console = Console(page)
    await page.goto(gw.url + "/ui")
    await page.wait_for_selector("#login:not([hidden])")
    await page.fill("#login-key", admin)
    await page.click("#login-form button")
    await page.wait_for_selector("body[data-loaded]")
    return page, console


def money(group: dict[str, Any]) -> str:
    """The dashboard's cost text, as `babelgate usage` prints it."""
    cost = group["cost"]
    if cost is None:
        return "unknown" if group["unpriced"] else NONE
    text = f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"
    return f"{text} + unpriced" if group["unpriced"] else text


async def table(page: Page, testid: str) -> list[list[str]]:
    """The text of a table's body rows, cell by cell."""
    rows: list[list[str]] = await page.eval_on_selector_all(
        f'[data-testid="{testid}"] tr:not(:first-child)',
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")
    return rows


@pytest.fixture
async def traffic(gateway_factory: GatewayFactory, fake_openai: FakeOpenAI,
                  fake_anthropic: FakeAnthropic, tmp_path: Path) -> tuple[Gateway, str, str]:
    gw, admin, user = await scripted_traffic(gateway_factory, fake_openai, fake_anthropic,
                                             tmp_path / "gw.db")
    await wait_for_rows(gw, admin, expected_totals()["requests"])
    return gw, admin, user


async def test_the_numbers_shown_are_the_usage_apis(
    browser: Browser, traffic: tuple[Gateway, str, str],
) -> None:
    gw, admin, _ = traffic
    page, console = await open_dashboard(browser, gw, admin)

    _, by_day = await admin_get(gw, "/admin/api/usage?since=7d&by=day", admin)
    total = by_day["total"]
    shown = {name: await page.text_content(f'[data-testid="total-{name}"]')
             for name in ("requests", "input", "output", "cost", "errors")}
    assert shown == {"requests": f"{total['requests']:,}", "input": f"{total['input_tokens']:,}",
                     "output": f"{total['output_tokens']:,}", "cost": money(total),
                     "errors": f"{total['errors']:,}"}
    expected = expected_totals()
    assert total["requests"] == expected["requests"]  # and the API is the script's truth

    for by in ("model", "provider", "key", "day"):
        _, summary = await admin_get(gw, f"/admin/api/usage?since=7d&by={by}", admin)
        assert await table(page, f"cost-by-{by}") == [
            [g["name"], f"{g['requests']:,}", f"{g['input_tokens'] + g['output_tokens']:,}",
             money(g)] for g in summary["groups"]], by

    _, recent = await admin_get(gw, "/admin/api/requests?limit=25", admin)
    rows = await table(page, "recent")
    assert len(rows) == len(recent["data"]) == expected["requests"]
    for row, request in zip(rows, recent["data"], strict=True):
        client, key, model, target = row[1:5]
        assert (client, key, model, target) == (
            request["client"], request["key"] or NONE, request["model"],
            request["target"] or "(refused)")
        assert row[5:7] == [f"{request['input_tokens']:,}", f"{request['output_tokens']:,}"]
        assert row[8].startswith(str(request["status"]))

    providers = await table(page, "providers")
    assert [(r[0], r[1], r[3]) for r in providers] == [
        ("oa", "openai", "ok"), ("an", "anthropic", "ok")]
    quota = await table(page, "quota")
    assert [(r[0], r[1], r[2]) for r in quota] == [("oa", NONE, "ok"), ("an", "daily", "ok")]
    assert sorted(r[0] for r in await table(page, "keys")) == ["alice", "ops"]

    # The chart was drawn: the canvas has coloured pixels, not a blank box.
    painted = await page.evaluate("""() => {
        const c = document.getElementById('chart');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
    }""")
    assert painted > 1000
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "dashboard-scripted.png"), full_page=True)
    assert console.errors == []


async def test_keys_created_and_revoked_in_the_page(
    browser: Browser, traffic: tuple[Gateway, str, str], fake_openai: FakeOpenAI,
) -> None:
    gw, admin, _ = traffic
    page, console = await open_dashboard(browser, gw, admin)
    await page.fill('#key-form input[name="name"]', "carol")
    await page.fill('#key-form input[name="models"]', "gpt-*")
    await page.click("#key-form button[type=submit]")
    await page.wait_for_selector('[data-testid="new-key"]:visible')
    key = (await page.text_content('[data-testid="new-key"]') or "").strip()
    assert key.startswith("bg-")
    await page.wait_for_selector('[data-testid="keys"] button[data-key="carol"]')

    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    fake_openai.queue(Reply(text="hello carol"))
    answer = await client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "hello carol"
    with pytest.raises(openai.PermissionDeniedError):  # its scope, as set in the page
        await client.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])

    button = page.locator('[data-testid="keys"] button[data-key="carol"]')
    await button.click()
    await button.click()  # the second click revokes
    await page.wait_for_selector('[data-testid="keys"] button[data-key="carol"]',
                                 state="detached")
    await wait_for_key(gw, key, 401)
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    await client.close()
    assert console.errors == []


async def test_a_wrong_key_is_refused_in_words_without_a_console_error(
    browser: Browser, gateway_factory: GatewayFactory, fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic, tmp_path: Path,
) -> None:
    # A browser writes every failed fetch (a 401) to the console as an error by itself; the
    # page must find out about a key without one, and say in words what is wrong.
    gw, admin, user = await keyed_gateway(gateway_factory, fake_openai, fake_anthropic,
                                          tmp_path / "gw.db")
    page = await browser.new_page(viewport=VIEWPORT)
    console = Console(page)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400
            else None)
    await page.goto(gw.url + "/ui")
    await page.wait_for_selector("#login:not([hidden])")
    for key, words in (("bg-not-a-key-of-this-gateway", "That key was refused: invalid API key."),
                       (user, "That key is not an admin key.")):
        await page.fill("#login-key", key)
        await page.click("#login-form button")
        await page.wait_for_selector(f'#login-error:visible:text-is("{words}")')
        assert await page.is_hidden("#board")
        assert await page.is_visible("#login")
    assert await page.evaluate("sessionStorage.length") == 0  # a refused key is not kept
    # The right key then opens the board, and a reload keeps it.
    await page.fill("#login-key", admin)
    await page.click("#login-form button")
    await page.wait_for_selector("body[data-loaded]")
    await page.reload()
    await page.wait_for_selector("body[data-loaded]")
    assert await page.is_visible("#board")
    # The key kept for this tab is revoked: the next load asks for a key again, in words.
    create(gw.config_path, "spare", "--admin")
    assert keys_cli(gw.config_path, "revoke", "ops").returncode == 0
    await wait_for_key(gw, admin, 401)
    await page.reload()
    await page.wait_for_selector(
        """#login-error:visible:text-is("That key was refused: API key 'ops' was revoked.")""")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "dashboard-wrong-key.png"))
    assert console.errors == []
    assert failed == []


async def test_static_files_are_served_safely(traffic: tuple[Gateway, str, str]) -> None:
    gw, _, _ = traffic
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.url + "/ui") as resp:  # open: no data in it
            assert resp.status == 200
            assert resp.headers["content-type"] == "text/html; charset=utf-8"
            assert resp.headers["cache-control"] == "no-cache"
            assert "default-src 'self'" in resp.headers["content-security-policy"]
            etag = resp.headers["etag"]
        async with session.get(gw.url + "/ui", headers={"if-none-match": etag}) as resp:
            assert resp.status == 304
        for path, kind in (("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css"),
                           ("/ui/favicon.svg", "image/svg+xml")):
            async with session.get(gw.url + path) as resp:
                assert resp.status == 200, path
                assert resp.headers["content-type"].startswith(kind)
        for path in ("/ui/../gateway-0.yaml", "/ui/%2e%2e/gw.db", "/ui/nothing.js",
                     "/ui/static/app.js", "/ui/__init__.py", "/ui//etc/passwd"):
            # Sent as written (encoded=True): the client must not tidy the dots away.
            async with session.get(URL(gw.url + path, encoded=True)) as resp:
                assert resp.status in (401, 404), path  # never a file from elsewhere
                body = await resp.read()
                assert b"providers:" not in body and b"SQLite" not in body


# ---------------------------------------------------------------- the docs' screenshot


async def busy_week(db: Path, now: float) -> None:
    """A week of plausible usage rows for the picture in the README (seeded random)."""
    rng = random.Random(7)
    targets = [("deepseek", "deepseek-chat", "claude-code", 0.27, 1.1),
               ("kimi", "kimi-k2.5", "codex", 0.6, 2.5),
               ("claude-max", "claude-sonnet-4-5", "claude-code", 3.0, 15.0),
               ("local", "qwen3-coder", "openai-sdk", None, None)]
    database = open_database(StorageURL.from_settings(None, str(db)))
    sink = UsageSink(UsageWriter(database))
    for hour in range(7 * 24, 0, -1):
        busy = 0.25 + (0.75 if 9 <= time.localtime(now - hour * 3600).tm_hour <= 19 else 0)
        for n in range(int(rng.random() * 14 * busy)):
            provider, model, client, p_in, p_out = rng.choice(targets)
            tokens_in, tokens_out = rng.randint(2_000, 40_000), rng.randint(100, 3_000)
            cost = None if p_in is None or p_out is None else (
                tokens_in * p_in + tokens_out * p_out) / 1e6
            failed = rng.random() < 0.03
            sink.record(UsageRecord(
                time=now - hour * 3600 + n * 97, request_id=f"r{hour}-{n}",
                key=rng.choice(["alice", "bob", "ci"]), client=client, protocol="anthropic",
                endpoint="/v1/messages", model="claude-sonnet-4-5", provider=provider,
                target_model=model, stream=True, status=529 if failed else 200,
                error_kind="overloaded" if failed else None,
                input_tokens=0 if failed else tokens_in,
                output_tokens=0 if failed else tokens_out, cost=None if failed else cost,
                latency_ms=rng.uniform(400, 9000), final=True))
    await asyncio.to_thread(sink.close)
    await database.close()


async def test_screenshot_of_a_busy_week(
    browser: Browser, gateway_factory: GatewayFactory, fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic, tmp_path: Path,
) -> None:
    """The README's picture: a week of traffic on four providers, one of them with its
    quota used up just now (a real 402 from the fake, through the gateway)."""
    db = tmp_path / "week.db"
    await busy_week(db, time.time())
    gw = await gateway_factory(
        {"deepseek": fake_openai.provider_config(preset="deepseek"),
         "kimi": fake_openai.provider_config(preset="kimi"),
         "claude-max": fake_anthropic.provider_config(
             quota={"window": "weekly", "reset": "mon 00:00"}),
         "local": fake_openai.provider_config()},
        routes={"claude-sonnet-4-5": ["claude-max/claude-sonnet-4-5", "deepseek/deepseek-chat"],
                "gpt-5-codex": "kimi/kimi-k2.5", "qwen": "local/qwen3-coder"},
        extra={"storage": {"path": str(db), "usage_flush_interval_s": 0.1},
               "prices": {"kimi/kimi-k2.5": {"input": 0.6, "output": 2.5}}})
    admin = create(gw.config_path, "ops", "--admin")
    user = create(gw.config_path, "alice", "--rpm", "120", "--budget", "10")
    create(gw.config_path, "ci", "--models", "gpt-*,qwen*")
    await wait_for_key(gw, user)
    fake_anthropic.queue(Reply(status=402, error="Your credit balance is too low."))
    fake_openai.queue(Reply(text="ok", usage=Usage(input_tokens=18_000, output_tokens=900)))
    chat = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=user, max_retries=0)
    await chat.chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    await chat.close()
    await asyncio.sleep(0.5)  # the writer's flush
    page, console = await open_dashboard(browser, gw, admin)
    quota = await table(page, "quota")
    assert [r[2] for r in quota] == ["ok", "ok", "exhausted", "ok"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "dashboard.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000
    assert int((await page.text_content('[data-testid="total-requests"]') or "0")
               .replace(",", "")) > 300
    assert console.errors == []
