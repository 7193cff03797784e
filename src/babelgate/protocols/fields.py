"""Optional fields of a client's request body (or of an object in it), checked the same way
for every protocol: absent or null gives None; a value of the wrong type is a 400 that names
the field. `where` is the path of the object the field is in (`tools[2]`), empty for the
body itself."""

from __future__ import annotations

from babelgate.canonical import JSON, GatewayError, invalid


def number(body: JSON, key: str, where: str = "") -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(key, where, "a number")
    return float(value)


def integer(body: JSON, key: str, minimum: int | None = None, where: str = "") -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(key, where, "an integer")
    if minimum is not None and value < minimum:
        raise _wrong(key, where, f"at least {minimum}")
    return value


def boolean(body: JSON, key: str, where: str = "") -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _wrong(key, where, "a boolean")
    return value


def string(body: JSON, key: str, where: str = "") -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong(key, where, "a string")
    return value


def mapping(body: JSON, key: str, where: str = "") -> JSON | None:
    """An object-valued field (a JSON Schema, a format)."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wrong(key, where, "an object")
    return value


def _wrong(key: str, where: str, what: str) -> GatewayError:
    path = f"{where}.{key}" if where else key
    return invalid(f"`{path}` must be {what}", path)
