"""Weights and stickiness: a weighted route spreads conversations in proportion, each
conversation stays on the target that served it while that target is usable, moves when it
is not, and is forgotten after an idle hour; memory stays bounded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from babelgate.canonical import GatewayError
from babelgate.config import CooldownConfig, ProviderConfig, ServerConfig, Settings
from babelgate.routing import ManualClock, Plan, RoutingPolicy, RoutingState, Target
from babelgate.routing.sticky import Stickiness

A, B, C = Target("a", "m"), Target("b", "m"), Target("c", "m")


def policy(weights: dict[str, float], **extra: Any) -> RoutingPolicy:
    providers = {name: ProviderConfig(type="openai", base_url=f"http://{name}.test/v1",
                                      weight=weights.get(name))
                 for name in ("a", "b", "c")}
    return RoutingPolicy.from_settings(Settings(
        server=ServerConfig(), providers=providers, routes={}, source="test", **extra))


class Draws:
    """Random numbers in a fixed cycle."""

    def __init__(self, values: Sequence[float]) -> None:
        self.values, self.index = values, 0

    def __call__(self) -> float:
        value = self.values[self.index % len(self.values)]
        self.index += 1
        return value


async def serve(state: RoutingState, rules: RoutingPolicy, key: str | None,
                failing: frozenset[Target] = frozenset(),
                targets: Sequence[Target] = (A, B, C)) -> Target:
    plan = Plan(state, rules, targets, key)
    async for target in plan:
        if target in failing:
            plan.failed(GatewayError("overloaded", "busy"))
            continue
        plan.succeeded()
        return target
    raise plan.error()


async def test_weights_spread_new_conversations_in_proportion() -> None:
    state = RoutingState(ManualClock(), random=Draws([i / 100 for i in range(100)]))
    rules = policy({"a": 3, "b": 1})  # c weighs 1 by default
    served = Counter([await serve(state, rules, f"conversation-{i}") for i in range(100)])
    assert served == {A: 60, B: 20, C: 20}


async def test_a_route_without_weighted_providers_keeps_its_order() -> None:
    state = RoutingState(ManualClock(), random=Draws([0.99]))
    rules = policy({"c": 5})
    assert await serve(state, rules, "k", targets=(A, B)) == A
    assert len(state.sticky) == 0


async def test_a_conversation_stays_where_it_started() -> None:
    state = RoutingState(ManualClock(), random=Draws([0.1, 0.9, 0.5, 0.7]))
    rules = policy({"a": 1, "b": 1, "c": 1})
    first = await serve(state, rules, "talk")
    assert [await serve(state, rules, "talk") for _ in range(10)] == [first] * 10
    other = await serve(state, rules, "another talk")
    assert other != first  # the draws moved on: a new conversation may start elsewhere


async def test_a_conversation_moves_when_its_target_fails_and_stays_moved() -> None:
    state = RoutingState(ManualClock(), random=Draws([0.0]))
    rules = policy({"a": 1, "b": 1})
    assert await serve(state, rules, "talk") == A
    assert await serve(state, rules, "talk", failing=frozenset({A})) == B
    assert await serve(state, rules, "talk") == B  # its cache is on B now


async def test_a_resting_sticky_target_is_passed_over() -> None:
    clock = ManualClock()
    state = RoutingState(clock, random=Draws([0.0]))
    rules = policy({"a": 1, "b": 1}, cooldown=CooldownConfig(failures=1, seconds=30))
    assert await serve(state, rules, "talk") == A
    assert await serve(state, rules, "other", failing=frozenset({A})) == B  # A rests
    assert await serve(state, rules, "talk") == B


async def test_stickiness_expires_after_an_idle_hour() -> None:
    clock = ManualClock()
    state = RoutingState(clock, random=Draws([0.0, 0.99]))
    rules = policy({"a": 1, "b": 1})
    assert await serve(state, rules, "talk", targets=(A, B)) == A
    clock.advance(3599)
    assert await serve(state, rules, "talk", targets=(A, B)) == A  # used: the hour restarts
    clock.advance(3600)
    assert await serve(state, rules, "talk", targets=(A, B)) == B  # forgotten: a new draw


def test_memory_is_bounded_least_recently_used_first() -> None:
    sticky = Stickiness(ManualClock(), ttl=3600, max_entries=3)
    for name in "pqrs":
        sticky.put(name, A)
        if name == "q":
            assert sticky.get("p") == A  # p used again: q is now the oldest
    assert len(sticky) == 3
    assert sticky.get("q") is None and sticky.get("p") == A and sticky.get("s") == A
