"""babelgate.routing.Router: resolution order, the client's own model name, fallbacks, and
the not-found errors a client sees."""

from __future__ import annotations

import pytest

from babelgate.canonical import GatewayError
from babelgate.config import NO_PROVIDER_HINT, ProviderConfig, ServerConfig, Settings
from babelgate.routing import Router, Target


def settings(routes: dict[str, list[str]], providers: tuple[str, ...] = ()) -> Settings:
    names = providers or ("deepseek", "gemini", "openrouter", "anthropic")
    return Settings(
        server=ServerConfig(),
        providers={
            name: ProviderConfig(type="openai", base_url=f"https://{name}.test/v1")
            for name in names
        },
        routes=routes,
        source="test.yaml",
    )


DOCUMENTED_ROUTES = {
    "claude-*haiku*": ["gemini/gemini-2.5-flash"],
    "claude-*opus*": ["deepseek/deepseek-reasoner", "gemini/gemini-2.5-pro"],
    "default": ["deepseek/deepseek-chat"],
}


def test_glob_routes() -> None:
    router = Router(settings(DOCUMENTED_ROUTES))
    assert router.resolve("claude-3-5-haiku-20241022") == [Target("gemini", "gemini-2.5-flash")]
    assert router.resolve("claude-haiku-4-5") == [Target("gemini", "gemini-2.5-flash")]


def test_fallback_list_keeps_order() -> None:
    router = Router(settings(DOCUMENTED_ROUTES))
    assert router.resolve("claude-opus-4-1-20250805") == [
        Target("deepseek", "deepseek-reasoner"),
        Target("gemini", "gemini-2.5-pro"),
    ]


def test_default_route() -> None:
    router = Router(settings(DOCUMENTED_ROUTES))
    assert router.resolve("claude-sonnet-4-5") == [Target("deepseek", "deepseek-chat")]
    assert router.resolve("gpt-4o") == [Target("deepseek", "deepseek-chat")]


def test_exact_route_beats_earlier_glob() -> None:
    routes = {
        "claude-*": ["gemini/gemini-2.5-pro"],
        "claude-sonnet-4-5": ["deepseek/deepseek-chat"],
    }
    router = Router(settings(routes))
    assert router.resolve("claude-sonnet-4-5") == [Target("deepseek", "deepseek-chat")]
    assert router.resolve("claude-sonnet-4") == [Target("gemini", "gemini-2.5-pro")]


def test_globs_tried_in_file_order() -> None:
    routes = {
        "claude-*": ["gemini/first"],
        "claude-*haiku*": ["deepseek/never-reached"],
    }
    router = Router(settings(routes))
    assert router.resolve("claude-haiku-4-5") == [Target("gemini", "first")]


def test_globs_are_case_sensitive_and_star_crosses_slash() -> None:
    routes = {"Claude-*": ["gemini/upper"], "org/*/big": ["deepseek/slashy"]}
    router = Router(settings(routes))
    assert router.resolve("org/a/b/big") == [Target("deepseek", "slashy")]
    with pytest.raises(GatewayError):
        router.resolve("claude-x")  # lower-case does not match "Claude-*"


def test_question_mark_and_classes() -> None:
    router = Router(settings({"o[0-9]*": ["deepseek/reasoner"], "gpt-?": ["gemini/g"]}))
    assert router.resolve("o3-mini") == [Target("deepseek", "reasoner")]
    assert router.resolve("gpt-5") == [Target("gemini", "g")]
    with pytest.raises(GatewayError):
        router.resolve("gpt-5o")


def test_direct_provider_model_skips_routes() -> None:
    router = Router(settings(DOCUMENTED_ROUTES))
    assert router.resolve("gemini/gemini-2.5-pro") == [Target("gemini", "gemini-2.5-pro")]
    # The model part may itself contain slashes.
    assert router.resolve("openrouter/anthropic/claude-sonnet-4") == [
        Target("openrouter", "anthropic/claude-sonnet-4")
    ]


def test_unknown_provider_is_404_listing_the_providers() -> None:
    """`nope/x` is a mistyped direct target: the default route must not hide the typo."""
    router = Router(settings(DOCUMENTED_ROUTES))
    with pytest.raises(GatewayError) as info:
        router.resolve("nope/x")
    assert info.value.status == 404
    message = info.value.message
    assert "'nope'" in message
    assert "anthropic, deepseek, gemini, openrouter" in message


def test_slash_names_still_follow_routes_that_match_them() -> None:
    routes = {"meta-llama/*": ["openrouter"], **DOCUMENTED_ROUTES}
    router = Router(settings(routes))
    assert router.resolve("meta-llama/llama-3") == [Target("openrouter", "meta-llama/llama-3")]
    assert router.resolve("claude-x/haiku-ish") == [Target("gemini", "gemini-2.5-flash")]


def test_client_own_model_name() -> None:
    routes = {
        "claude-*": ["anthropic"],
        "gpt-*": ["openrouter/*"],
        "default": ["deepseek", "openrouter/fallback"],
    }
    router = Router(settings(routes))
    assert router.resolve("claude-sonnet-4-5") == [Target("anthropic", "claude-sonnet-4-5")]
    assert router.resolve("gpt-5") == [Target("openrouter", "gpt-5")]
    assert router.resolve("kimi-k2") == [
        Target("deepseek", "kimi-k2"),
        Target("openrouter", "fallback"),
    ]


def test_not_found_lists_routable() -> None:
    router = Router(settings({"claude-*haiku*": ["gemini/gemini-2.5-flash"]}, ("gemini",)))
    with pytest.raises(GatewayError) as info:
        router.resolve("gpt-4o")
    error = info.value
    assert error.kind == "not_found"
    assert error.status == 404
    assert "no route for model 'gpt-4o'" in error.message
    assert "claude-*haiku*" in error.message
    assert "gemini/gemini-2.5-flash" in error.message
    assert "gemini/*" in error.message


def test_no_providers_gives_the_configuration_hint() -> None:
    router = Router(Settings(server=ServerConfig(), providers={}, routes={}, source="environment"))
    with pytest.raises(GatewayError) as info:
        router.resolve("claude-sonnet-4-5")
    # 400: what Claude Code and Codex show verbatim (tests/agents/test_no_provider.py).
    assert (info.value.kind, info.value.status) == ("invalid_request", 400)
    assert info.value.message == NO_PROVIDER_HINT


def test_routable_lists_patterns_targets_and_providers_once() -> None:
    routes = {
        "claude-*": ["anthropic"],
        "claude-*opus*": ["deepseek/deepseek-reasoner", "gemini/gemini-2.5-pro"],
        "default": ["deepseek/deepseek-reasoner"],
    }
    router = Router(settings(routes))
    assert router.routable() == [
        "claude-*",
        "claude-*opus*",
        "anthropic/*",
        "deepseek/deepseek-reasoner",
        "gemini/gemini-2.5-pro",
        "deepseek/*",
        "gemini/*",
        "openrouter/*",
    ]


def test_model_ids_are_concrete_names_a_picker_can_send() -> None:
    routes = {
        "claude-*": ["anthropic"],
        "my-coder": ["deepseek/deepseek-chat", "gemini/gemini-2.5-pro"],
        "default": ["deepseek/deepseek-reasoner"],
    }
    router = Router(settings(routes))
    assert router.model_ids() == [
        "my-coder", "deepseek/deepseek-chat", "gemini/gemini-2.5-pro",
        "deepseek/deepseek-reasoner",
    ]
    for name in router.model_ids():  # every id listed is one the gateway serves
        router.resolve(name)


def test_a_glob_offers_the_known_names_it_decides() -> None:
    routes = {
        "claude-sonnet-4-5": ["gemini/gemini-2.5-pro"],
        "claude-*opus*": ["deepseek/deepseek-reasoner"],
        "claude-*": ["deepseek/deepseek-chat"],
        "*": ["openrouter"],
    }
    offered = ("claude-sonnet-4-5", "claude-opus-4-8", "claude-haiku-4-5", "gpt-5",
               "deepseek/deepseek-chat", "claude-opus-4-8")
    router = Router(settings(routes), offered=offered)
    # The exact route and the target stay where they were; each name once; `*` (a
    # catch-all) and the direct `provider/model` name offer nothing more.
    assert router.model_ids() == [
        "claude-sonnet-4-5", "gemini/gemini-2.5-pro", "deepseek/deepseek-reasoner",
        "deepseek/deepseek-chat", "claude-opus-4-8", "claude-haiku-4-5",
    ]
    assert router.route("claude-opus-4-8").header == "route:claude-*opus*"
    assert router.route("claude-haiku-4-5").header == "route:claude-*"
    assert Router(settings({"default": ["deepseek/x"]}), offered=offered).model_ids() == [
        "deepseek/x"]


def test_results_are_cached_and_bounded() -> None:
    router = Router(settings(DOCUMENTED_ROUTES), cache_size=3)
    first = router.resolve("claude-haiku-4-5")
    first.append(Target("x", "y"))  # the caller's list is its own
    assert router.resolve("claude-haiku-4-5") == [Target("gemini", "gemini-2.5-flash")]
    for name in ("a", "b", "c", "d"):
        router.resolve(name)
    assert len(router._cache) == 3
    assert "claude-haiku-4-5" not in router._cache  # oldest evicted first
