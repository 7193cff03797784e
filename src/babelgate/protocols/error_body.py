"""Reading an upstream's error body: the steps every protocol's `parse_error` shares before
it reads its own error shape. A body that is empty or not JSON is no error object; its text
(cut short, since a proxy's HTML page can be long) becomes the message.
"""

from __future__ import annotations

from typing import Any

import orjson


def load_error_json(body: bytes, *, first_of_list: bool = False) -> Any:
    """The body's JSON, or None for an empty body or one that is not JSON. With
    `first_of_list`, a non-empty JSON array stands for its first item (Google, and some
    OpenAI-compatible hosts, wrap the error object in one)."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if first_of_list and isinstance(data, list) and data:
        return data[0]
    return data


def error_text(body: bytes, most: int, empty: str) -> str:
    """A body that holds no error object, as the error's message: its text, stripped, at
    most `most` characters; `empty` when there is none."""
    return body.decode("utf-8", "replace").strip()[:most] or empty
