"""What the gateway offers: `GET /v1/providers` and `GET /v1/models/capabilities`.

What this module promises:
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
