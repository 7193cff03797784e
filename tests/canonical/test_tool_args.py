"""Tool arguments from upstreams: what clients receive must always be one JSON object."""

import pytest

from babelgate.canonical.tool_args import dump_arguments, parse_arguments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"command": "ls -la"}', {"command": "ls -la"}),
        ("", {}),
        (None, {}),
        ("null", {}),
        ("  ", {}),
        # a provider that repeats the call's arguments
        ('{"path": "a.py"}{"path": "a.py"}', {"path": "a.py"}),
        # cut off by max_tokens inside a string, an array, after a key
        ('{"command": "ls -la', {"command": "ls -la"}),
        ('{"files": ["a", "b"', {"files": ["a", "b"]}),
        ('{"a": 1, "b":', {"a": 1, "b": None}),
        ('{"a": 1,', {"a": 1}),
        # a dangling escape and an escaped quote inside a truncated string
        ('{"a": "x\\', {"a": "x"}),
        ('{"a": "say \\"hi', {"a": 'say "hi'}),
        # a markdown fence around the object
        ('```json\n{"x": 1}\n```', {"x": 1}),
        # valid JSON that is not an object
        ("[1, 2]", {"value": [1, 2]}),
        ("not json at all", {}),
    ],
)
def test_parse_arguments_repairs(text: str | None, expected: dict[str, object]) -> None:
    assert parse_arguments(text) == expected


def test_dump_keeps_unicode_and_is_compact() -> None:
    assert dump_arguments({"text": "héllo 世界"}) == '{"text":"héllo 世界"}'
