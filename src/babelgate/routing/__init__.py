"""Routing: client model names to ordered lists of upstream targets (router.py), and the order
of attempts for one request with retries, cooldowns and quota windows (plan.py), remembered
across requests and reloads in one RoutingState (state.py)."""

from .clock import SYSTEM_CLOCK, Clock, ManualClock
from .plan import Plan, iso_time
from .policy import RoutingPolicy
from .router import Route, Router, Target
from .state import ProviderStatus, RoutingState

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "Plan", "ProviderStatus", "Route", "Router",
           "RoutingPolicy", "RoutingState", "Target", "iso_time"]
