"""What the gateway offers: `GET /v1/models`, `GET /v1/providers` and
`GET /v1/models/capabilities`.

What this module promises:
- `models_listing` answers /v1/models with the router's model ids (routing/router.py says
  which: exact route names, targets, and the catalogue's ids each glob route decides), in
  Anthropic's shape or OpenAI's. Anthropic's carries a `description` per model, naming
  where a request for it goes: Claude Code's picker shows it under the name.
- `providers_listing` names each configured provider with its type, preset, base URL, how
  its key is supplied (the kind, never a value), its health as /v1/quota tells it (ok,
  exhausted, cooling, with times and reason, and each of several `api_keys`), its quota
  window when configured, and the upstream model names the routes and rules send to it (a
  target standing for the client's own name is left out: it is any model).
- `capabilities_listing` answers, for every model id /v1/models lists, the capabilities of
  the target a request for it tries first (providers/capabilities.py), and each fallback's
  beside it. Unknown is null.
- Both read the running configuration (the Gateway a reload swapped in) and, through
  /v1/quota's answer, the routing state; neither touches the network or the database.
  Neither is on the request path.
"""

from __future__ import annotations

from typing import Any

import msgspec

from babelgate.canonical import GatewayError
from babelgate.config import Settings
from babelgate.providers.capabilities import capabilities_of
from babelgate.providers.provider import Provider
from babelgate.routing.router import OWN_NAME, Target, parse_target

from .gateway import Gateway


def routed_models(settings: Settings) -> dict[str, list[str]]:
    """Provider name -> the upstream model names routes and rules name for it, in file
    order, each once."""
    found: dict[str, dict[str, None]] = {name: {} for name in settings.providers}
    targets = [t for ts in settings.routes.values() for t in ts]
    targets += [t for rule in settings.rules for t in (rule.to or ())]
    for target in targets:
        provider, model = parse_target(target)
        if model is not None and model != OWN_NAME and provider in found:
            found[provider].setdefault(model)
    return {name: list(models) for name, models in found.items()}


def providers_listing(gateway: Gateway, quota: list[dict[str, Any]]) -> dict[str, Any]:
    """`quota`: GET /v1/quota's providers, each provider's health as that endpoint shows it
    (with its `api_keys`' own states when it has several)."""
    settings = gateway.settings
    health = {entry["name"]: {k: v for k, v in entry.items() if k != "name"}
              for entry in quota}
    models = routed_models(settings)
    data = []
    for name, provider in gateway.providers.items():
        config = settings.providers.get(name)
        window = config.quota if config is not None else None
        data.append({
            **provider.describe(),
            "preset": getattr(provider, "preset", None),
            "health": health.get(name, {"state": "ok", "since": None, "resets_at": None,
                                        "reason": None}),
            "quota": None if window is None else {"window": window.window,
                                                  "reset": window.reset},
            "models": models.get(name, []),
        })
    return {"object": "list", "data": data}


def _description(gateway: Gateway, model_id: str) -> str:
    """"routed to deepseek/deepseek-chat by claude-*": where a request for `model_id`
    goes, and which route sends it there."""
    try:
        route = gateway.router.route(model_id)
    except GatewayError:  # an id /v1/models lists always routes; be safe all the same
        return ""
    targets = ", then ".join(f"{t.provider}/{t.model}" for t in route.targets)
    how = route.header.removeprefix("route:")
    return f"routed to {targets} " + ("directly" if how == "direct" else f"by {how}")


def models_listing(gateway: Gateway, *, anthropic: bool, created: int) -> dict[str, Any]:
    """GET /v1/models: Anthropic's Models API shape when `anthropic`, else OpenAI's list
    (`created`: when the gateway started, as OpenAI's answer has one per model)."""
    names = gateway.router.model_ids()
    if anthropic:
        return {
            "data": [{"type": "model", "id": name, "display_name": name,
                      "created_at": "2025-01-01T00:00:00Z",
                      "description": _description(gateway, name)} for name in names],
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "babelgate"}
        for name in names
    ]}


def _target_capabilities(provider: Provider, target: Target) -> dict[str, Any]:
    caps = capabilities_of(provider.type, getattr(provider, "quirks", None), target.model)
    return {"target": f"{target.provider}/{target.model}", "provider": target.provider,
            "type": provider.type, "preset": getattr(provider, "preset", None),
            **msgspec.structs.asdict(caps)}


def capabilities_listing(gateway: Gateway) -> dict[str, Any]:
    data = []
    for model_id in gateway.router.model_ids():
        try:
            targets = gateway.router.route(model_id).targets
        except GatewayError:  # an id /v1/models lists always routes; be safe all the same
            continue
        described = [_target_capabilities(gateway.providers[t.provider], t)
                     for t in targets if t.provider in gateway.providers]
        if not described:
            continue
        first = described[0]
        data.append({"id": model_id, **first, "fallbacks": described[1:]})
    return {"object": "list", "data": data}
