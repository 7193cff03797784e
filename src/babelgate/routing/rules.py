"""Rules: conditions on a request, checked in file order before the routes; the first rule
whose conditions all hold decides. It may route (`to`), edit the request, or both.

What this module promises:
- Everything is compiled once, at start-up, into frozen values (`Rule`, `Edits`): globs into
  compiled patterns, `set` values into canonical values, the rule's own targets into specs.
- Per request: one pass over the rules, each rule's conditions cheapest first, stopping at
  the first that fails. `model` globs are not run per request: the rules a model name can
  meet are worked out once per name and kept (bounded, as the Router's answers). What
  costs more than a few attribute reads is computed only when a rule reached asks for it,
  and at most once per request (`Facts`): whether an image is in the conversation, and the
  input-token estimate (`tokens.quick_estimate`: one walk of the messages, the tool list's
  part kept in the caller's reuse table). A tool list the table does not keep (a new
  conversation's) is not counted while a bound that does not read its schemas
  (`tokens.quick_bound`) is at most the threshold; the estimate a check made goes on with
  the decision (a stream's start reports it), else whoever needs one later makes it, the
  same number. No rules configured: nothing runs at all. Measured (bench, whole process,
  Claude Code body, ten rules none of which match): ten cheap rules ~1-2% of a request's
  instructions; an `image` rule adds ~1%, a `long_context` rule ~1-3% (the estimate:
  docs/benchmark.md "What routing costs").
- An edit never changes a value it was given: `Edits.apply` builds a new Request
  (msgspec.structs.replace); the texts it adds are built once and shared.

How conditions read a request:
- `background`: the client's small/fast-model work. Claude Code sends its housekeeping (the
  title of a conversation, a summary, the topic check, the quota probe with `max_tokens: 1`)
  to its small model, Haiku unless ANTHROPIC_SMALL_FAST_MODEL says otherwise, without tools,
  with a system prompt of a sentence or two and max_tokens of 512 or less, and without
  thinking (recorded requests of Claude Code; tests/agents/README.md, PROTOCOLS.md). So a
  request is background when its model name contains `haiku` (any case), or when it offers no
  tools, asks for no reasoning, caps max_tokens at 512 or less and its system prompt is at
  most 2,000 characters (`Background`'s parameters). Claude Code's main turns carry a dozen
  tools, a 10 KB+ system prompt and 32k+ max_tokens: never background. A chat client that
  sends a small max_tokens without tools looks the same; a rule can add `user_agent` or
  `header` (Claude Code sends `x-app: cli`) to tell them apart.
- `thinking`: reasoning asked for: Anthropic `thinking` enabled or adaptive, OpenAI
  `reasoning_effort` / Responses `reasoning.effort` other than `none` (and not turned off).
- `image`: an image part in any message, tool results included.
- `long_context: N`: the input-token estimate is above N.
- `web_search`: a hosted tool whose type starts with `web_search` (Anthropic
  web_search_2025..., Responses web_search / web_search_preview, Gemini googleSearch).
- `tools`: any tool offered (`false`: none).
- `model`, `user_agent`, `header`: globs (fnmatch, case-sensitive, as routes) on the client's
  model name, its User-Agent, and the named headers; a header that is absent never matches.

Edits apply in this order: `set`, `remove`, `system_prepend` / `system_append`, then the
`max_tokens` clamp (a max_tokens the client did not send stays unsent). Removing `tools`
also removes `tool_choice`, which no upstream accepts without tools.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from msgspec.structs import replace

from babelgate import tokens
from babelgate.canonical import Image, Message, Request, Text, Tool, ToolResult
from babelgate.canonical.edits import cleared, field_name, settable_value
from babelgate.config import RuleConfig
from babelgate.protocols.reuse import Reuse

from .router import Route, Router, Spec, compile_targets, named_route, targets_for

BACKGROUND_MODEL_MARK = "haiku"
CACHE_SIZE = 4096  # model names whose candidate rules are remembered (Router's is as large)


class Facts:
    """One request as the conditions see it; what is dear is worked out on first use."""

    __slots__ = ("_bound", "_estimate", "_image", "headers", "request", "reuse")

    def __init__(self, request: Request, headers: Mapping[str, str], reuse: Reuse) -> None:
        self.request = request
        self.headers = headers
        self.reuse = reuse
        self._estimate: int | None = None
        self._bound: int | None = None
        self._image: bool | None = None

    @property
    def estimated(self) -> int | None:
        """The estimate if a check made it (None: nobody asked)."""
        return self._estimate

    def estimate(self) -> int:
        if self._estimate is None:
            self._estimate = tokens.quick_estimate(self.request, self.reuse)
        return self._estimate

    def above(self, limit: int) -> bool:
        """Whether the input-token estimate is above `limit`. A tool list the reuse table
        does not keep (a new conversation's) would have every schema read to count its
        properties: a bound that does not read them (`tokens.quick_bound`) decides first,
        and the estimate is made only when the bound is above `limit`."""
        if self._estimate is None:
            tools = self.request.tools
            if tools and not self.reuse.keeps(tools):
                if self._bound is None:
                    self._bound = tokens.quick_bound(self.request)
                if self._bound <= limit:
                    return False
        return self.estimate() > limit

    def image(self) -> bool:
        if self._image is None:
            self._image = _has_image(self.request.messages)
        return self._image


Check = Callable[[Facts], bool]


def _has_image(messages: tuple[Message, ...]) -> bool:
    # A plain walk: ~80 ns a part, where looking each message up in the reuse table
    # (derive) costs ~400 ns and agents' messages hold one to three parts (measured on the
    # bench's Claude Code body: 1.2 us against 2.9 us).
    for message in messages:
        for part in message.parts:
            if type(part) is Image:
                return True
            if type(part) is ToolResult:
                for item in part.content:
                    if type(item) is Image:
                        return True
    return False


def thinking_requested(request: Request) -> bool:
    reasoning = request.reasoning
    if reasoning is None or reasoning.enabled is False:
        return False
    if reasoning.enabled or reasoning.adaptive:
        return True
    return reasoning.effort is not None and reasoning.effort != "none"


def offers_web_search(tools: tuple[Tool, ...]) -> bool:
    for tool in tools:
        if tool.kind == "hosted" and (tool.hosted_type or "").startswith("web_search"):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Background:
    """The `background` heuristic's limits (see the module docstring)."""

    max_tokens: int = 512
    system_chars: int = 2000

    def __call__(self, request: Request) -> bool:
        if BACKGROUND_MODEL_MARK in request.model.lower():
            return True
        if request.tools or request.max_tokens is None or request.max_tokens > self.max_tokens:
            return False
        if thinking_requested(request):
            return False
        return sum(len(text.text) for text in request.system) <= self.system_chars


@dataclass(frozen=True, slots=True)
class Edits:
    """What a rule changes, compiled: `fields` holds the canonical values `set` gives and the
    cleared values `remove` gives (remove wins over set); `remove` names the fields removed
    (as canonical names), `set` those set, for pass-through bodies (server/rule_edits.py)."""

    fields: tuple[tuple[str, Any], ...] = ()
    set: tuple[tuple[str, Any], ...] = ()
    remove: tuple[str, ...] = ()
    prepend: Text | None = None
    append: Text | None = None
    max_tokens: int | None = None

    def __bool__(self) -> bool:
        return bool(self.fields or self.prepend or self.append or self.max_tokens is not None)

    def apply(self, request: Request) -> Request:
        changes = dict(self.fields)
        if self.prepend is not None or self.append is not None:
            system = changes.get("system", request.system)
            if self.prepend is not None:
                system = (self.prepend, *system)
            if self.append is not None:
                system = (*system, self.append)
            changes["system"] = system
        if self.max_tokens is not None:
            wanted = changes.get("max_tokens", request.max_tokens)
            if wanted is not None and wanted > self.max_tokens:
                changes["max_tokens"] = self.max_tokens
        return replace(request, **changes) if changes else request


@dataclass(frozen=True, slots=True)
class Rule:
    label: str  # its `name`, else its position in the list counted from 0 (as config errors)
    checks: tuple[Check, ...]  # all but `model`, which Rules.match applies per model name
    edits: Edits
    to: tuple[Spec, ...] | None
    model: Callable[[str], object] | None = None  # the `model` glob's match, if any

    def route(self, model: str, router: Router) -> Route:
        """Where a request this rule matched goes: its own targets, else the routes' (for the
        edited request's model)."""
        if self.to is not None:
            return named_route(targets_for(self.to, model), None, self.label)
        found = router.route(model)
        return named_route(found.targets, found.header, self.label)


class Decision(NamedTuple):
    """What the rules and routes decided for one request (`Rules.choose`)."""

    request: Request  # as the first matching rule edited it
    route: Route
    rule: Rule | None  # None: no rule matched
    estimate: int | None  # input tokens, when a check estimated `request` already


class Rules:
    """The configured rules, compiled. After init only the per-model cache changes (a
    bounded dict of tuples of the frozen rules, as the Router's)."""

    def __init__(self, rules: Sequence[RuleConfig], *, background: Background | None = None,
                 cache_size: int = CACHE_SIZE) -> None:
        self._background = background or Background()
        self.rules = tuple(self._compile(index, rule) for index, rule in enumerate(rules))
        self._cache_size = cache_size
        self._for_model: dict[str, tuple[Rule, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, request: Request, headers: Mapping[str, str], reuse: Reuse) -> Rule | None:
        """The first rule whose conditions hold for `request`, or None."""
        return self._match(request, headers, reuse)[0]

    def _match(
        self, request: Request, headers: Mapping[str, str], reuse: Reuse
    ) -> tuple[Rule | None, Facts | None]:
        """The first matching rule, and the facts worked out deciding it (None when no rule
        was a candidate)."""
        rules = self._for_model.get(request.model)
        if rules is None:
            rules = self._candidates(request.model)
        if not rules:
            return None, None
        facts = Facts(request, headers, reuse)
        for rule in rules:
            # Loops, not all(): no generator per rule on a path every request takes.
            for check in rule.checks:
                if not check(facts):
                    break
            else:
                return rule, facts
        return None, facts

    def _candidates(self, model: str) -> tuple[Rule, ...]:
        """The rules whose `model` glob (if any) matches `model`, in order: a client uses a
        handful of names, so each rule's glob runs once per name, not once per request."""
        found = tuple(rule for rule in self.rules
                      if rule.model is None or rule.model(model) is not None)
        if len(self._for_model) >= self._cache_size:
            del self._for_model[next(iter(self._for_model))]  # oldest first
        self._for_model[model] = found
        return found

    def decide(
        self, request: Request, headers: Mapping[str, str], reuse: Reuse, router: Router
    ) -> tuple[Request, Route, Rule | None]:
        """The request as edited by the first rule that matches (or as it came), where it
        goes, and the rule (None when none matched). Raises GatewayError(not_found) when the
        routes have nothing for its model."""
        decision = self.choose(request, headers, reuse, router)
        return decision.request, decision.route, decision.rule

    def choose(
        self, request: Request, headers: Mapping[str, str], reuse: Reuse, router: Router
    ) -> Decision:
        """`decide`, and the input-token estimate when a `long_context` check made one for
        the request as it goes on (not edited since): a translated stream's start reports it
        instead of estimating again."""
        if not self.rules:
            return Decision(request, router.route(request.model), None, None)
        rule, facts = self._match(request, headers, reuse)
        estimate = facts.estimated if facts is not None else None
        if rule is None:
            return Decision(request, router.route(request.model), None, estimate)
        if rule.edits:
            request, estimate = rule.edits.apply(request), None  # the edits change the count
        return Decision(request, rule.route(request.model, router), rule, estimate)

    # ------------------------------------------------------------------ compiling

    def _compile(self, index: int, config: RuleConfig) -> Rule:
        return Rule(
            label=config.name or str(index),
            checks=self._checks(config),
            edits=_edits(config),
            to=compile_targets(config.to) if config.to is not None else None,
            model=_glob(config.when.model) if config.when.model is not None else None,
        )

    def _checks(self, config: RuleConfig) -> tuple[Check, ...]:
        """The rule's conditions but `model` as functions, cheapest first."""
        when = config.when
        checks: list[Check] = []
        if when.tools is not None:
            tools = when.tools
            checks.append(lambda f: bool(f.request.tools) is tools)
        if when.thinking is not None:
            thinking = when.thinking
            checks.append(lambda f: thinking_requested(f.request) is thinking)
        if when.web_search is not None:
            web_search = when.web_search
            # Once per tool list an agent resends (the reuse table shares it between turns).
            checks.append(
                lambda f: f.reuse.derive(offers_web_search, f.request.tools) is web_search)
        if when.background is not None:
            background, is_background = when.background, self._background
            checks.append(lambda f: is_background(f.request) is background)
        if when.user_agent is not None:
            checks.append(_header_check("user-agent", when.user_agent))
        for name, value in when.header.items():
            checks.append(_header_check(name.lower(), value))
        if when.image is not None:
            image = when.image
            checks.append(lambda f: f.image() is image)
        if when.long_context is not None:
            above = when.long_context
            checks.append(lambda f: f.above(above))
        return tuple(checks)


def _glob(pattern: str) -> Callable[[str], object]:
    # fnmatch.translate + re.match is fnmatchcase: case-sensitive everywhere, as routes are.
    return re.compile(fnmatch.translate(pattern)).match


def _header_check(name: str, pattern: str) -> Check:
    matches = _glob(pattern)

    def check(facts: Facts) -> bool:
        value = facts.headers.get(name)
        return value is not None and matches(value) is not None

    return check


def _edits(config: RuleConfig) -> Edits:
    set_values = tuple((name, settable_value(name, value)) for name, value in config.set.items())
    removed: list[str] = []
    for name in config.remove:
        removed.append(field_name(name))
        if name == "tools":
            removed.append("tool_choice")
    remove = tuple(dict.fromkeys(removed))  # once each, in order
    fields = dict(set_values)
    fields.update((name, cleared(name)) for name in remove)
    return Edits(
        fields=tuple(fields.items()),
        set=tuple((name, value) for name, value in set_values if name not in remove),
        remove=remove,
        prepend=Text(config.system_prepend) if config.system_prepend else None,
        append=Text(config.system_append) if config.system_append else None,
        max_tokens=config.max_tokens,
    )
