"""Cooldowns as other processes see them (server/shared_routing.py relies on this): the
listener hears each rest that begins and each that ends early here; a rest another process
holds is taken until the same wall time; rests no process holds any more end; `changes`
counts what happened here. The rests of keys of `api_keys` (`KeyRests`) are shared the same
way."""

from __future__ import annotations

from babelgate.routing import ManualClock, Target
from babelgate.routing.health import CooldownPolicy, Cooldowns, KeyRests

A, B = Target("a", "model-a"), Target("b", "model-b")
POLICY = CooldownPolicy(failures=2, seconds=30)


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, Target, float]] = []

    def rested(self, target: Target, since: float, until: float, failures: int,
               reason: str) -> None:
        self.events.append(("rested", target, until - since))

    def woke(self, target: Target) -> None:
        self.events.append(("woke", target, 0.0))


def test_the_listener_hears_rests_begin_and_end_here() -> None:
    clock = ManualClock()
    cooldowns, heard = Cooldowns(clock), Heard()
    cooldowns.listener = heard
    assert not cooldowns.failed(A, POLICY, "HTTP 503")
    assert heard.events == [] and cooldowns.changes == 0  # counting is not resting
    assert cooldowns.failed(A, POLICY, "HTTP 503")
    assert heard.events == [("rested", A, 30.0)] and cooldowns.changes == 1
    clock.advance(30)
    assert not cooldowns.resting(A, POLICY)  # this request is the probe
    cooldowns.succeeded(A)
    assert heard.events[-1] == ("woke", A, 0.0) and cooldowns.changes == 2
    cooldowns.failed(B, POLICY, "HTTP 500")
    cooldowns.clear("b")  # B only counted a failure: nothing woke
    assert len(heard.events) == 2


def test_a_rest_held_elsewhere_is_taken_until_the_same_time_and_ends_with_it() -> None:
    clock = ManualClock()
    cooldowns = Cooldowns(clock)
    cooldowns.rest_until(A, clock.now() - 5, clock.now() + 25, 3, "HTTP 503")
    assert cooldowns.resting(A, POLICY) and cooldowns.changes == 0
    [rest] = cooldowns.rests()
    assert (rest.target, rest.until - clock.now(), rest.reason) == (A, 25.0, "HTTP 503")
    cooldowns.wake_all_but([A])
    assert cooldowns.resting(A, POLICY)
    cooldowns.wake_all_but([])  # no process rests it any more: it wakes here too
    assert not cooldowns.resting(A, POLICY) and cooldowns.rests() == []
    # A rest taken from elsewhere ends by itself at its time, then one probe decides.
    cooldowns.rest_until(B, clock.now(), clock.now() + 10, 3, "HTTP 500")
    clock.advance(10)
    assert not cooldowns.resting(B, POLICY)
    assert cooldowns.failed(B, POLICY, "HTTP 500")  # the probe failed: it rests again


class HeardKeys:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, float]] = []

    def key_rested(self, provider: str, key: str, since: float, until: float,
                   reason: str) -> None:
        self.events.append(("rested", provider, key, until - since))

    def key_woke(self, provider: str, key: str) -> None:
        self.events.append(("woke", provider, key, 0.0))


def test_the_rests_of_keys_are_heard_taken_from_elsewhere_and_ended_like_targets() -> None:
    clock = ManualClock()
    rests, heard = KeyRests(clock), HeardKeys()
    rests.listener = heard
    rests.rest("p", "k0", 60, "refused (HTTP 401)")
    assert heard.events == [("rested", "p", "k0", 60.0)] and rests.changes == 1
    rests.rest("p", "k0", 10, "refused (HTTP 429)")  # a shorter rest changes nothing
    assert len(heard.events) == 1 and rests.changes == 1

    # Another process rests k1 until 25 s from now: taken, not heard (it is not ours).
    rests.rest_until("p", "k1", clock.now() - 5, clock.now() + 25, "refused (HTTP 403)")
    assert rests.until("p", "k1") == clock.monotonic() + 25 and rests.changes == 1
    since, until, reason = rests.current("p", "k1") or (0, 0, "")
    assert (clock.now() - since, until - clock.now(), reason) == (5.0, 25.0,
                                                                  "refused (HTTP 403)")
    assert len(heard.events) == 1
    rests.wake_all_but([("p", "k0")])  # no process rests k1 any more (a reset elsewhere)
    assert rests.current("p", "k1") is None and rests.until("p", "k0") > clock.monotonic()

    rests.clear("p")  # a reset here: every process hears k0 woke
    assert heard.events[-1] == ("woke", "p", "k0", 0.0) and rests.changes == 2
    rests.rest_until("p", "k1", clock.now(), clock.now() + 10, "refused (HTTP 401)")
    clock.advance(10)
    rests.clear()  # a rest over by itself is not news to anyone
    assert len(heard.events) == 2
