"""Routing: client model names to ordered lists of upstream targets (see router.py)."""

from .router import Route, Router, Target

__all__ = ["Route", "Router", "Target"]
