"""Routing: client model names to ordered lists of upstream targets (see router.py)."""

from .router import Router, Target

__all__ = ["Router", "Target"]
