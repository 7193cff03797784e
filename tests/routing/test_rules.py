"""babelgate.routing.rules: each condition, each edit, first match wins, `to` against the
routes, and that edits build new values. Requests are parsed from wire bodies by the real
codecs, the way the server builds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from babelgate.canonical import Request, Text
from babelgate.config import Settings, load_settings
from babelgate.protocols import get_codec
from babelgate.protocols.reuse import Reuse
from babelgate.routing import Router, Target
from babelgate.routing.rules import Background, Rules

PROVIDERS = {
    "deepseek": {"type": "openai", "base_url": "https://deepseek.test/v1"},
    "gemini": {"type": "gemini", "base_url": "https://gemini.test"},
    "claude": {"type": "anthropic", "base_url": "https://anthropic.test"},
}
ROUTES = {"claude-*": ["claude/claude-up"], "default": ["deepseek/deepseek-chat"]}
TOOL = {"name": "Bash", "description": "run", "input_schema": {"type": "object"}}
PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
         "RU5ErkJggg==")


def settings(tmp_path: Path, rules: list[dict[str, Any]]) -> Settings:
    path = tmp_path / "babelgate.yaml"
    path.write_text(yaml.safe_dump({"providers": PROVIDERS, "routes": ROUTES, "rules": rules}))
    return load_settings(path, env={})


def anthropic(**body: Any) -> Request:
    data = {"model": "claude-sonnet-4-5", "max_tokens": 32000,
            "messages": [{"role": "user", "content": "hello"}], **body}
    return get_codec("anthropic").parse_request(data, Reuse())


def chat(**body: Any) -> Request:
    data = {"model": "gpt-5", "messages": [{"role": "user", "content": "hello"}], **body}
    return get_codec("openai").parse_request(data, Reuse())


def responses(**body: Any) -> Request:
    data = {"model": "gpt-5", "input": "hello", **body}
    return get_codec("openai-responses").parse_request(data, Reuse())


class Decider:
    def __init__(self, tmp_path: Path, rules: list[dict[str, Any]], **kwargs: Any) -> None:
        config = settings(tmp_path, rules)
        self.rules = Rules(config.rules, **kwargs)
        self.router = Router(config)

    def __call__(self, request: Request, headers: dict[str, str] | None = None
                 ) -> tuple[Request, str, list[Target]]:
        edited, route, _ = self.rules.decide(request, headers or {}, Reuse(), self.router)
        return edited, route.header, list(route.targets)

    def header(self, request: Request, headers: dict[str, str] | None = None) -> str:
        return self(request, headers)[1]


def one_rule(tmp_path: Path, condition: dict[str, Any], **kwargs: Any) -> Decider:
    return Decider(tmp_path, [{"name": "hit", "if": condition, "to": "gemini/g"}], **kwargs)


# ---------------------------------------------------------------- conditions


def test_background_by_model_name(tmp_path: Path) -> None:
    decide = one_rule(tmp_path, {"background": True})
    assert decide.header(anthropic(model="claude-haiku-4-5-20251001", tools=[TOOL])) == "rule:hit"
    assert decide.header(anthropic(model="Claude-3-5-HAIKU")) == "rule:hit"
    assert decide.header(anthropic(tools=[TOOL])) == "route:claude-*"


def test_background_title_call_without_haiku_name(tmp_path: Path) -> None:
    """A title call as Claude Code makes it, with its small model renamed: no tools, a short
    system prompt, max_tokens 512."""
    decide = one_rule(tmp_path, {"background": True})
    title = anthropic(
        model="my-small-model", max_tokens=512, temperature=0,
        system=[{"type": "text", "text": "Summarize this coding conversation in under 50 "
                 "characters.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Please write a 5-10 word title..."}],
    )
    assert decide.header(title) == "rule:hit"
    assert decide.header(anthropic(model="my-small-model", max_tokens=1)) == "rule:hit"
    # The main turn: tools, a long system prompt, a big max_tokens.
    main = anthropic(model="my-small-model", tools=[TOOL], system="x" * 12000)
    assert decide.header(main) == "default"
    # No tools but a long system prompt, or a big max_tokens, or thinking: not background.
    assert decide.header(anthropic(model="m", max_tokens=512, system="x" * 3000)) == "default"
    assert decide.header(anthropic(model="m", max_tokens=1000)) == "default"
    thinking = anthropic(model="m", max_tokens=1000,
                         thinking={"type": "enabled", "budget_tokens": 1024})
    assert decide.header(thinking) == "default"
    assert decide.header(chat()) == "default"  # no max_tokens said: not a small call


def test_background_limits_are_parameters(tmp_path: Path) -> None:
    decide = one_rule(tmp_path, {"background": True}, background=Background(max_tokens=4096))
    assert decide.header(anthropic(model="m", max_tokens=4096)) == "rule:hit"


def test_background_false(tmp_path: Path) -> None:
    decide = one_rule(tmp_path, {"background": False})
    assert decide.header(anthropic(tools=[TOOL])) == "rule:hit"
    assert decide.header(anthropic(model="claude-haiku-4-5")) == "route:claude-*"


@pytest.mark.parametrize(("request_", "expected"), [
    (anthropic(thinking={"type": "enabled", "budget_tokens": 2048}), True),
    (anthropic(thinking={"type": "adaptive"}), True),
    (anthropic(thinking={"type": "disabled"}), False),
    (anthropic(), False),
    (chat(reasoning_effort="high"), True),
    (chat(reasoning_effort="minimal"), True),
    (chat(reasoning_effort="none"), False),
    (responses(reasoning={"effort": "low"}), True),
    (responses(reasoning={"effort": "none"}), False),
    (responses(), False),
])
def test_thinking(tmp_path: Path, request_: Request, expected: bool) -> None:
    decide = one_rule(tmp_path, {"thinking": True})
    assert (decide.header(request_) == "rule:hit") is expected
    negated = Decider(tmp_path, [{"name": "no", "if": {"thinking": False}, "to": "gemini"}])
    assert (negated.header(request_) == "rule:no") is not expected


def test_image_anywhere_in_the_conversation(tmp_path: Path) -> None:
    decide = one_rule(tmp_path, {"image": True})
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PIXEL}}
    pasted = anthropic(messages=[{"role": "user", "content": [image, {"type": "text",
                                                                      "text": "what?"}]}])
    assert decide.header(pasted) == "rule:hit"
    in_result = anthropic(tools=[TOOL], messages=[
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": [image]}]},
    ])
    assert decide.header(in_result) == "rule:hit"
    url = chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}])
    assert decide.header(url) == "rule:hit"
    assert decide.header(anthropic()) == "route:claude-*"


def test_long_context_uses_the_estimate(tmp_path: Path) -> None:
    decide = one_rule(tmp_path, {"long_context": 1000})
    short = anthropic(messages=[{"role": "user", "content": "word " * 100}])
    long = anthropic(messages=[{"role": "user", "content": "word " * 2000}])  # ~2,800 tokens
    assert decide.header(short) == "route:claude-*"
    assert decide.header(long) == "rule:hit"


def test_long_context_estimate_only_when_reached(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier condition of the same rule that fails spares the estimate; so does an
    earlier rule that matches."""
    from babelgate import tokens
    calls: list[int] = []
    real = tokens.quick_estimate

    def counting(request: Request, reuse: Reuse) -> int:
        calls.append(1)
        return real(request, reuse)

    monkeypatch.setattr(tokens, "quick_estimate", counting)
    decide = Decider(tmp_path, [
        {"if": {"model": "gpt-*"}, "to": "deepseek"},
        {"if": {"tools": True, "long_context": 10}, "to": "gemini/a"},
        {"if": {"long_context": 10}, "to": "gemini/b"},
        {"if": {"long_context": 5}, "to": "gemini/c"},
    ])
    decide(chat())
    assert calls == []
    decide(anthropic(messages=[{"role": "user", "content": "word " * 100}]))
    assert calls == [1]  # rules 2 and 3 share one estimate; rule 1 never asked


def test_the_estimate_a_rule_made_goes_on_with_the_decision(tmp_path: Path) -> None:
    """A translated stream's start reports the estimate `long_context` made (Rules.choose),
    rather than walking the conversation again; an edited request is estimated anew."""
    from babelgate import tokens
    decider = Decider(tmp_path, [
        {"name": "long", "if": {"long_context": 100000}, "to": "gemini/pro"},
        {"name": "sys", "if": {"long_context": 10}, "system_prepend": "Be brief."},
    ])
    reuse = Reuse()
    short = anthropic(messages=[{"role": "user", "content": "word"}])
    decision = decider.rules.choose(short, {}, reuse, decider.router)
    assert decision.rule is None and decision.estimate == tokens.quick_estimate(short, reuse)
    long = anthropic(messages=[{"role": "user", "content": "word " * 100}])
    edited = decider.rules.choose(long, {}, reuse, decider.router)
    assert edited.rule is not None and edited.rule.label == "sys"
    assert edited.estimate is None  # the prepended text changes the count
    plain = Decider(tmp_path, [{"if": {"model": "nope-*"}, "to": "gemini/pro"}])
    assert plain.rules.choose(long, {}, reuse, plain.router).estimate is None  # none made


def test_web_search(tmp_path: Path) -> None:
    decide = one_rule(tmp_path, {"web_search": True})
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    assert decide.header(anthropic(tools=[TOOL, search])) == "rule:hit"
    assert decide.header(responses(tools=[{"type": "web_search"}])) == "rule:hit"
    assert decide.header(responses(tools=[{"type": "web_search_preview"}])) == "rule:hit"
    assert decide.header(anthropic(tools=[TOOL])) == "route:claude-*"


def test_tools(tmp_path: Path) -> None:
    decide = Decider(tmp_path, [{"name": "none", "if": {"tools": False}, "to": "gemini"},
                                {"name": "some", "if": {"tools": True}, "to": "deepseek"}])
    assert decide.header(anthropic()) == "rule:none"
    assert decide.header(anthropic(tools=[TOOL])) == "rule:some"


def test_model_glob(tmp_path: Path) -> None:
    decide = one_rule(tmp_path, {"model": "claude-*opus*"})
    assert decide.header(anthropic(model="claude-opus-4-1")) == "rule:hit"
    assert decide.header(anthropic(model="claude-sonnet-4-5")) == "route:claude-*"
    assert decide.header(anthropic(model="Claude-Opus-4")) == "default"  # case-sensitive


def test_user_agent_and_header_globs(tmp_path: Path) -> None:
    decide = Decider(tmp_path, [
        {"name": "cherry", "if": {"user_agent": "CherryStudio*"}, "to": "gemini"},
        {"name": "cli", "if": {"header": {"X-App": "cli", "anthropic-beta": "*context-*"}},
         "to": "deepseek"},
    ])
    assert decide.header(chat(), {"user-agent": "CherryStudio/1.5"}) == "rule:cherry"
    assert decide.header(chat(), {"user-agent": "curl/8"}) == "default"
    assert decide.header(chat(), {}) == "default"  # no header: no match
    both = {"x-app": "cli", "anthropic-beta": "a,context-management-2025-06-27"}
    assert decide.header(anthropic(), both) == "rule:cli"
    assert decide.header(anthropic(), {"x-app": "cli"}) == "route:claude-*"  # one of two


def test_all_conditions_must_hold(tmp_path: Path) -> None:
    decide = one_rule(tmp_path, {"model": "claude-*", "tools": False, "thinking": True})
    assert decide.header(anthropic(thinking={"type": "adaptive"})) == "rule:hit"
    assert decide.header(anthropic(thinking={"type": "adaptive"}, tools=[TOOL])) != "rule:hit"
    assert decide.header(anthropic()) != "rule:hit"
    assert decide.header(chat(reasoning_effort="high")) != "rule:hit"


def test_empty_if_matches_everything(tmp_path: Path) -> None:
    decide = Decider(tmp_path, [{"set": {"temperature": 0.5}}])
    edited, header, targets = decide(chat())
    assert (edited.temperature, header, targets) == (0.5, "rule:0, default",
                                                    [Target("deepseek", "deepseek-chat")])


# ---------------------------------------------------------------- order and targets


def test_first_match_decides(tmp_path: Path) -> None:
    decide = Decider(tmp_path, [
        {"if": {"model": "claude-*"}, "system_append": "first"},
        {"name": "second", "if": {"model": "claude-*"}, "to": "gemini/g",
         "system_append": "second"},
    ])
    edited, header, targets = decide(anthropic())
    assert header == "rule:0, route:claude-*"  # labelled by position when unnamed
    assert targets == [Target("claude", "claude-up")]
    assert [t.text for t in edited.system] == ["first"]


def test_to_list_and_own_model_name(tmp_path: Path) -> None:
    decide = Decider(tmp_path, [
        {"name": "a", "if": {"model": "a"}, "to": ["deepseek/deepseek-reasoner", "gemini/*"]},
        {"name": "b", "if": {"model": "b"}, "to": "gemini"},
    ])
    assert decide(chat(model="a"))[2] == [Target("deepseek", "deepseek-reasoner"),
                                          Target("gemini", "a")]
    assert decide(chat(model="b"))[1:] == ("rule:b", [Target("gemini", "b")])


def test_no_rules_and_no_match_are_the_routes(tmp_path: Path) -> None:
    for rules in ([], [{"if": {"model": "nothing"}, "to": "gemini"}]):
        decide = Decider(tmp_path, rules)
        request = anthropic()
        edited, header, targets = decide(request)
        assert edited is request
        assert (header, targets) == ("route:claude-*", [Target("claude", "claude-up")])
        assert decide(chat(model="deepseek/x"))[1] == "direct"


def test_route_log_names_rule_and_route(tmp_path: Path) -> None:
    config = settings(tmp_path, [{"name": "bg", "if": {"background": True}, "to": "gemini"},
                                 {"name": "sys", "if": {"model": "gpt-*"},
                                  "system_prepend": "x"}])
    rules, router = Rules(config.rules), Router(config)
    assert rules.decide(anthropic(model="claude-haiku-4-5"), {}, Reuse(), router)[1].log == (
        "rule=bg route=-")
    assert rules.decide(chat(), {}, Reuse(), router)[1].log == "rule=sys route=default"
    assert rules.decide(anthropic(tools=[TOOL]), {}, Reuse(), router)[1].log == (
        "rule=- route=claude-*")


# ---------------------------------------------------------------- edits


def test_system_prepend_and_append(tmp_path: Path) -> None:
    decide = Decider(tmp_path, [{"system_prepend": "You are Claude Code.",
                                 "system_append": "Answer in French."}])
    original = anthropic(system=[{"type": "text", "text": "Be brief.",
                                  "cache_control": {"type": "ephemeral"}}])
    edited = decide(original)[0]
    assert [t.text for t in edited.system] == ["You are Claude Code.", "Be brief.",
                                               "Answer in French."]
    assert edited.system[1] is original.system[0]  # the client's block, cache mark and all
    assert [t.text for t in original.system] == ["Be brief."]  # the original is untouched
    assert [t.text for t in decide(chat())[0].system] == ["You are Claude Code.",
                                                          "Answer in French."]


def test_set(tmp_path: Path) -> None:
    decide = Decider(tmp_path, [{"set": {"temperature": 0.3, "top_p": 1, "stop": "END",
                                         "max_tokens": 2000, "user": "team-a",
                                         "reasoning": {"effort": "low"}}}])
    edited = decide(anthropic(temperature=1.0))[0]
    assert edited.temperature == 0.3 and isinstance(edited.top_p, float)
    assert (edited.stop, edited.max_tokens, edited.user) == (("END",), 2000, "team-a")
    assert edited.reasoning is not None and edited.reasoning.effort == "low"


def test_remove(tmp_path: Path) -> None:
    decide = Decider(tmp_path, [{"remove": ["metadata", "temperature", "tools", "system"]}])
    original = anthropic(temperature=0.7, metadata={"user_id": "u1"}, tools=[TOOL],
                         tool_choice={"type": "any"}, system="sys")
    assert (original.user, original.tool_choice is not None) == ("u1", True)
    edited = decide(original)[0]
    assert (edited.user, edited.temperature, edited.tools, edited.tool_choice,
            edited.system) == (None, None, (), None, ())
    assert original.temperature == 0.7  # a new value; the parsed one is shared


def test_remove_wins_over_set(tmp_path: Path) -> None:
    edited = Decider(tmp_path, [{"set": {"temperature": 0.3}, "remove": ["temperature"]}])(
        chat(temperature=1))[0]
    assert edited.temperature is None


def test_remove_system_then_prepend_replaces_it(tmp_path: Path) -> None:
    edited = Decider(tmp_path, [{"remove": ["system"], "system_prepend": "mine"}])(
        anthropic(system="theirs"))[0]
    assert edited.system == (Text("mine"),)


def test_max_tokens_clamp(tmp_path: Path) -> None:
    decide = Decider(tmp_path, [{"max_tokens": 8192}])
    assert decide(anthropic(max_tokens=32000))[0].max_tokens == 8192
    assert decide(anthropic(max_tokens=1000))[0].max_tokens == 1000
    assert decide(chat())[0].max_tokens is None  # not sent: stays unsent
    clamped_set = Decider(tmp_path, [{"set": {"max_tokens": 50000}, "max_tokens": 8192}])
    assert clamped_set(chat())[0].max_tokens == 8192


def test_rules_are_frozen(tmp_path: Path) -> None:
    rules = Rules(settings(tmp_path, [{"system_prepend": "x", "if": {"model": "m"}}]).rules)
    rule = rules.rules[0]
    with pytest.raises(AttributeError):
        rule.label = "other"  # type: ignore[misc]  # the point: it must refuse
    with pytest.raises(AttributeError):
        rule.edits.max_tokens = 1  # type: ignore[misc]  # likewise
    assert isinstance(rules.rules, tuple) and isinstance(rule.checks, tuple)


def test_model_globs_run_once_per_model_name(tmp_path: Path) -> None:
    """The rules a model name can meet are kept per name, in a bounded table."""
    config = settings(tmp_path, [{"name": "a", "if": {"model": "a-*"}, "to": "gemini"},
                                 {"name": "any", "if": {"tools": True}, "to": "deepseek"}])
    rules, router = Rules(config.rules, cache_size=2), Router(config)
    for _ in range(2):
        assert rules.decide(chat(model="a-1"), {}, Reuse(), router)[1].header == "rule:a"
        assert rules.decide(chat(model="b-1"), {}, Reuse(), router)[1].header == "default"
    assert [r.label for r in rules._for_model["b-1"]] == ["any"]
    rules.decide(chat(model="c-1"), {}, Reuse(), router)
    assert list(rules._for_model) == ["b-1", "c-1"]  # the oldest name went first
