"""Optional scalar fields of a client's request body, checked the same way for every protocol:
absent or null gives None; a value of the wrong type is a 400 that names the field."""

from __future__ import annotations

from babelgate.canonical import JSON, invalid


def number(body: JSON, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"`{key}` must be a number", key)
    return float(value)


def integer(body: JSON, key: str, minimum: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"`{key}` must be an integer", key)
    if minimum is not None and value < minimum:
        raise invalid(f"`{key}` must be at least {minimum}", key)
    return value


def boolean(body: JSON, key: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid(f"`{key}` must be a boolean", key)
    return value
