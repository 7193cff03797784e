"""Optional fields of a client's request body (or of an object in it), checked the same way
for every protocol: absent or null gives None; a value of the wrong type is a 400 that names
the field. `where` is the path of the object the field is in (`tools[2]`), empty for the
body itself."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from babelgate.canonical import JSON, GatewayError, invalid

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


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


class _Field(Protocol[_T_co]):
    def __call__(self, body: JSON, key: str, where: str = "") -> _T_co | None: ...


def _typed(kind: type[_T], what: str) -> _Field[_T]:
    """The reader of an optional field whose value must be a `kind` (`what`, in the 400).
    Made at import, one per type: reading a field stays one call."""

    def read(body: JSON, key: str, where: str = "") -> _T | None:
        value = body.get(key)
        if value is None:
            return None
        if not isinstance(value, kind):
            raise _wrong(key, where, what)
        return value

    return read


boolean: _Field[bool] = _typed(bool, "a boolean")
string: _Field[str] = _typed(str, "a string")
mapping: _Field[JSON] = _typed(dict, "an object")  # an object-valued field (a schema, a format)


def required_string(body: JSON, key: str, where: str) -> str:
    """A field that must be a non-empty string (a name, an id)."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise invalid(f"{where}.{key} is required", f"{where}.{key}")
    return value


def typed_object(value: Any, where: str) -> tuple[JSON, str]:
    """An object with a `type` string (an item, a part, a tool), and that type."""
    if not isinstance(value, dict):
        raise invalid(f"{where} must be an object", where)
    kind = value.get("type")
    if not isinstance(kind, str):  # before any lookup: a list or an object is no name
        raise invalid(f"{where}.type is required", f"{where}.type")
    return value, kind


def _wrong(key: str, where: str, what: str) -> GatewayError:
    path = f"{where}.{key}" if where else key
    return invalid(f"`{path}` must be {what}", path)
