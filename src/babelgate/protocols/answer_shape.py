"""The shape an upstream's whole answer must have before a codec reads its fields.

Codecs read an answer's fields leniently (a missing usage is no usage, an unknown block is
skipped), but an answer whose main list is not a list of objects (`"choices": "none"`) is no
answer at all: read leniently, it became an empty 200 for the client. These checks raise
ValueError, which the gateway reports as the upstream's fault: a 502 naming it, and the next
target tried (server/gateway.py, MISREAD).
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


def answer_list(body: JSON, key: str) -> list[JSON]:
    """`body[key]`, a list of objects ([] when absent or null); ValueError for anything else."""
    value = body.get(key)
    if value is None:
        return []
    if type(value) is not list or not all(type(item) is dict for item in value):
        raise ValueError(f"`{key}` is not a list of objects")
    return value


def answer_object(body: JSON, key: str) -> JSON:
    """`body[key]`, an object ({} when absent or null); ValueError for anything else."""
    value = body.get(key)
    if value is None:
        return {}
    if type(value) is not dict:
        raise ValueError(f"`{key}` is not an object")
    return value
