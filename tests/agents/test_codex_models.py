"""Whether Codex (0.169.0) reads a custom provider's model list, held with the real CLI
(`codex debug models` prints the catalogue its /model picker offers; docs/clients.md).

- By default it never asks: a `[model_providers.X]` with a `base_url` gets no GET /models,
  and the catalogue is the one bundled in the binary.
- With the provider key `model_catalog_url` it GETs that URL (`?client_version=0.169.0`,
  the provider's key as a bearer token) and takes the answer as its whole catalogue, in its
  own format (`{"models": [{"slug", "display_name", "base_instructions", ...}]}`, each entry
  carrying Codex's system prompt for that model). An OpenAI-style list of ids, which is what
  babelgate's /v1/models answers, parses as no model at all: the picker is left empty, so
  that key must not point at babelgate. babelgate does not answer Codex's format, as that
  would mean writing Codex's prompts; Codex users name a model with `-m` or `model =`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.agents.harness import (
    agent_binary,
    codex_config,
    codex_env,
    make_workspace,
    run_agent,
)
from tests.conftest import GatewayFactory
from tests.fakes import FakeOpenAI, FakeResponses

pytestmark = [pytest.mark.agent,
              pytest.mark.skipif(agent_binary("codex") is None,
                                 reason="run scripts/install-agents.sh")]


async def codex_catalogue(base_url: str, home: Path, workdir: Path, key: str,
                          *args: str) -> list[str]:
    """The model slugs `codex debug models` prints for a provider at `base_url`."""
    codex_home = home / ".codex"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(base_url))
    (codex_home / "models_cache.json").unlink(missing_ok=True)  # Codex keeps the last answer
    run = await run_agent([str(agent_binary("codex")), "debug", "models", *args],
                          codex_env(home, key), workdir, timeout=60)
    assert run.returncode == 0, run.explain()
    catalogue: dict[str, Any] = orjson.loads(run.stdout)
    return [model["slug"] for model in catalogue["models"]]


async def test_codex_asks_a_custom_provider_for_no_models(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    async with FakeResponses() as fake:
        listed = await codex_catalogue(fake.base_url, ws.home, ws.workdir, fake.api_key)
        bundled = await codex_catalogue(fake.base_url, ws.home, ws.workdir, fake.api_key,
                                        "--bundled")
    assert listed == bundled and listed  # its own models, from the binary
    assert [r.path for r in fake.requests] == []  # nothing asked of the provider


@pytest.mark.gateway
async def test_a_model_catalog_url_takes_codexs_own_format_only(
    gateway_factory: GatewayFactory, tmp_path: Path,
) -> None:
    ws = make_workspace(tmp_path)
    async with FakeResponses() as fake, FakeOpenAI() as upstream:
        # What Codex asks for, seen at a fake; its OpenAI-shaped answer empties the picker.
        catalog_url = f'model_providers.babelgate.model_catalog_url="{fake.base_url}/models"'
        listed = await codex_catalogue(fake.base_url, ws.home, ws.workdir, fake.api_key,
                                       "-c", catalog_url)
        asked = [(r.method, r.path, r.query, r.headers.get("authorization"))
                 for r in fake.requests]
        gw = await gateway_factory({"deepseek": upstream},
                                   routes={"claude-*": "deepseek/test-model"})
        at_gateway = await codex_catalogue(
            gw.url + "/v1", ws.home, ws.workdir, "sk-anything",
            "-c", f'model_providers.babelgate.model_catalog_url="{gw.url}/v1/models"')
    assert asked == [("GET", "/v1/models", {"client_version": "0.169.0"},
                      f"Bearer {fake.api_key}")]
    assert listed == []
    assert at_gateway == []  # babelgate's list of ids is not Codex's catalogue format
