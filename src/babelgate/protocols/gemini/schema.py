"""JSON Schema -> the Schema subset Gemini's `functionDeclarations[].parameters` accepts.

What this module promises:
- The result holds only keys Gemini's Schema defines (an allowlist, so a keyword nobody has
  seen yet cannot cause a 400): `$schema`, `additionalProperties`, `propertyNames`,
  `exclusiveMinimum/Maximum`, `examples`, `default`, `deprecated`, `input_examples`... are
  dropped.
- Meaning is kept where Gemini can express it: `$ref` into `$defs`/`definitions` is inlined
  (a recursive reference is cut to a plain `{"type": "object"}`), `const` becomes a one-value
  `enum`, `anyOf: [X, {type: null}]` and `type: [X, "null"]` become X with `nullable: true`,
  `allOf` is merged, `oneOf` becomes `anyOf`, non-string enums become a sentence in the
  description (Gemini enums are strings only), `required` only names properties that exist.
- Cheap on the hot path: clients send the same tool list on every turn, so cleaned schemas
  are memoised by their serialised bytes. The returned dicts are shared: never mutate them.
"""

from __future__ import annotations

from typing import Any

import orjson

from babelgate.canonical import invalid

JSON = dict[str, Any]

# Keys Gemini's Schema object defines and we pass through (after cleaning their values).
_SCALAR_KEYS = (
    "title",
    "description",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "pattern",
)
_STRING_FORMATS = frozenset({"enum", "date-time"})
_NUMBER_FORMATS = frozenset({"int32", "int64", "float", "double"})
_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})
_RECURSION_STUB: JSON = {"type": "object"}


def clean_parameters(schema: JSON | None) -> JSON | None:
    """A tool's input schema -> Gemini `parameters`, or None when the tool takes no
    arguments (Gemini rejects an OBJECT with empty `properties`, so the key is omitted).
    Remembered per schema by the caller's reuse table (request.py), not here."""
    if not schema or not isinstance(schema, dict):
        return None
    cleaned: JSON | None = _Cleaner(schema).clean(schema)
    if cleaned is not None and cleaned.get("type") == "object" and not cleaned.get("properties"):
        cleaned = None
    return cleaned


def cleaned_parameters(schema: bytes) -> JSON | None:
    """clean_parameters of a schema given as its JSON: the key a reuse table remembers the
    result by (Reuse.memo), so equal schemas of different requests are cleaned once."""
    try:
        decoded: JSON | None = orjson.loads(schema)
    except orjson.JSONDecodeError as exc:  # a client's own text: a number past a double's
        raise invalid(f"request body is not valid JSON: {exc}") from None
    return clean_parameters(decoded)


def clean_schema(schema: JSON) -> JSON:
    """Any JSON Schema (a response schema, a nested one) -> Gemini's Schema subset."""
    return _Cleaner(schema).clean(schema)


class _Cleaner:
    """One pass over one schema; holds the root's definitions and the `$ref` stack."""

    __slots__ = ("_defs", "_expanding")

    def __init__(self, root: JSON) -> None:
        defs: JSON = {}
        for key in ("definitions", "$defs"):
            found = root.get(key)
            if isinstance(found, dict):
                defs.update(found)
        self._defs = defs
        self._expanding: list[str] = []

    def clean(self, node: Any) -> JSON:
        if not isinstance(node, dict):
            return {}
        if "$ref" in node:
            return self._ref(node)
        if isinstance(node.get("allOf"), list):
            node = _merge_all_of(node, [self._deref(part) for part in node["allOf"]])
        alternatives = node.get("anyOf") or node.get("oneOf")
        if isinstance(alternatives, list):
            return self._any_of(node, alternatives)
        return self._plain(node)

    def _ref(self, node: JSON) -> JSON:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1] if isinstance(ref, str) else ""
        target = self._defs.get(name)
        if not isinstance(target, dict) or name in self._expanding:
            stub = dict(_RECURSION_STUB)
            if isinstance(node.get("description"), str):
                stub["description"] = node["description"]
            return stub
        self._expanding.append(name)
        try:
            resolved = self.clean(target)
        finally:
            self._expanding.pop()
        if isinstance(node.get("description"), str):  # the use site's words win
            resolved = {**resolved, "description": node["description"]}
        return resolved

    def _deref(self, part: Any) -> Any:
        """An allOf member with its `$ref` replaced by the raw definition (cleaned later)."""
        if isinstance(part, dict) and isinstance(part.get("$ref"), str):
            target = self._defs.get(part["$ref"].rsplit("/", 1)[-1])
            if isinstance(target, dict):
                return target
        return part

    def _any_of(self, node: JSON, alternatives: list[Any]) -> JSON:
        options = [a for a in alternatives if not _is_null(a)]
        nullable = len(options) < len(alternatives)
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        if len(options) == 1:
            merged = {**rest, **options[0]} if isinstance(options[0], dict) else rest
            out = self.clean(merged)
        else:
            out = self._plain(rest) if rest else {}
            out.pop("type", None)
            out["anyOf"] = [self.clean(option) for option in options]
        if nullable:
            out["nullable"] = True
        return out

    def _plain(self, node: JSON) -> JSON:
        out: JSON = {}
        kind, nullable = _type_of(node)
        if isinstance(kind, list):  # several non-null types: one alternative each
            out["anyOf"] = [self._plain({**node, "type": k}) for k in kind]
            kind = None
        elif kind is not None:
            out["type"] = kind
        if nullable or node.get("nullable") is True:
            out["nullable"] = True
        for key in _SCALAR_KEYS:
            if key in node and not isinstance(node[key], dict | list):
                out[key] = node[key]
        _copy_enum(node, out, kind)
        _copy_format(node, out, kind)
        if kind == "object" or (kind is None and "properties" in node):
            self._object(node, out)
        if kind == "array" or (kind is None and "items" in node):
            out["items"] = self.clean(node.get("items")) if "items" in node else {"type": "string"}
        return out

    def _object(self, node: JSON, out: JSON) -> None:
        out.setdefault("type", "object")
        props = node.get("properties")
        if not isinstance(props, dict) or not props:
            return
        cleaned = {name: self.clean(value) for name, value in props.items()}
        out["properties"] = cleaned
        required = node.get("required")
        if isinstance(required, list):
            kept = [name for name in required if isinstance(name, str) and name in cleaned]
            if kept:
                out["required"] = kept


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null" and len(node) == 1


def _type_of(node: JSON) -> tuple[str | list[str] | None, bool]:
    """(the type or types without null, whether null was allowed)."""
    raw = node.get("type")
    if isinstance(raw, str):
        lowered = raw.lower()
        return (lowered if lowered in _TYPES else None), lowered == "null"
    if isinstance(raw, list):
        types = [t.lower() for t in raw if isinstance(t, str) and t.lower() in _TYPES]
        nullable = any(isinstance(t, str) and t.lower() == "null" for t in raw)
        if len(types) == 1:
            return types[0], nullable
        return (types or None), nullable
    if "const" in node or "enum" in node:
        values = [node["const"]] if "const" in node else node.get("enum") or []
        if values and all(isinstance(v, str) for v in values):
            return "string", False
    return None, False


def _copy_enum(node: JSON, out: JSON, kind: Any) -> None:
    values = [node["const"]] if "const" in node else node.get("enum")
    if not isinstance(values, list) or not values:
        return
    if all(isinstance(v, str) for v in values) and kind in ("string", None):
        out["enum"] = values
        out["type"] = "string"
        return
    # Gemini enums are strings only; say it in words rather than change the value's type.
    allowed = ", ".join(orjson.dumps(v).decode() for v in values)
    sentence = f"Allowed values: {allowed}."
    description = out.get("description")
    out["description"] = f"{description} {sentence}" if description else sentence


def _copy_format(node: JSON, out: JSON, kind: Any) -> None:
    fmt = node.get("format")
    if not isinstance(fmt, str):
        return
    if (kind == "string" and fmt in _STRING_FORMATS) or (
        kind in ("number", "integer") and fmt in _NUMBER_FORMATS
    ):
        out["format"] = fmt


def _merge_all_of(node: JSON, parts: list[Any]) -> JSON:
    """All members folded into one schema: properties and required lists united, other keys
    taken from the first member that has them. A member's own `allOf` is not followed (it
    could point back here)."""
    merged: JSON = {k: v for k, v in node.items() if k != "allOf"}
    for part in parts:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "allOf":
                continue
            # The node's own value may be of any type: a client's schema is not checked.
            if key == "properties" and isinstance(value, dict):
                mine = merged.get("properties")
                merged["properties"] = {**(mine if isinstance(mine, dict) else {}), **value}
            elif key == "required" and isinstance(value, list):
                mine = merged.get("required")
                merged["required"] = [*(mine if isinstance(mine, list) else []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def to_json_schema(node: Any) -> Any:
    """A Gemini Schema (as a Gemini-SDK client sends it: `STRING`-style types, `nullable`)
    -> standard JSON Schema, for the canonical Tool."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: JSON = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf"):
            out[key] = to_json_schema(value)
        elif key != "nullable":
            out[key] = value
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out
