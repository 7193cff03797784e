"""Gemini tool declarations from a Claude Code tool list: every keyword Gemini rejects is
gone, and what the schemas mean (properties, required, enums, nullability) is kept."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from babelgate.canonical import Message, Request, Text, Tool
from babelgate.protocols.base import Quirks
from babelgate.protocols.gemini import codec
from babelgate.protocols.gemini.names import gemini_name
from babelgate.protocols.gemini.schema import clean_parameters, cleaned_parameters
from babelgate.protocols.reuse import Reuse

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
REJECTED = {
    "$schema",
    "additionalProperties",
    "const",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "propertyNames",
    "input_examples",
    "deprecated",
    "examples",
    "default",
    "$ref",
    "$defs",
    "definitions",
    "oneOf",
    "allOf",
}


def claude_code_tools() -> list[Tool]:
    raw = json.loads((FIXTURES / "claude_code_tools.json").read_text())
    return [
        Tool(name=t["name"], description=t["description"], parameters=t["input_schema"])
        for t in raw
    ]


@pytest.fixture(scope="module")
def declarations() -> dict[str, dict[str, Any]]:
    request = Request(
        model="gemini-2.5-pro",
        messages=(Message("user", (Text("hi"),)),),
        tools=tuple(claude_code_tools()),
    )
    body = codec.render_request(request, Quirks())
    (tools,) = body["tools"]
    return {d["name"]: d for d in tools["functionDeclarations"]}


def walk(node: Any, path: str = "") -> list[tuple[str, str, Any]]:
    """Every (path, key, value) in a schema, properties' names excluded from the keys."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    found.extend(walk(sub, f"{path}.{name}"))
                continue
            found.append((path, key, value))
            found.extend(walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for item in node:
            found.extend(walk(item, path))
    return found


def test_no_rejected_keyword_survives(declarations: dict[str, dict[str, Any]]) -> None:
    for name, decl in declarations.items():
        for path, key, value in walk(decl.get("parameters", {})):
            assert key not in REJECTED, (name, path, key)
            if key == "format":
                assert value in {"enum", "date-time", "int32", "int64", "float", "double"}
            if key == "type":
                assert isinstance(value, str), (name, path, value)


def test_bash_keeps_properties_required_and_limits(
    declarations: dict[str, dict[str, Any]],
) -> None:
    params = declarations["Bash"]["parameters"]
    assert params["type"] == "object"
    assert set(params["properties"]) == {
        "command",
        "timeout",
        "description",
        "run_in_background",
        "dangerouslyDisableSandbox",
    }
    assert params["required"] == ["command"]
    assert params["properties"]["timeout"] == {
        "type": "number",
        "description": "Optional timeout in milliseconds (max 600000)",
        "maximum": 600000,
    }
    assert declarations["Bash"]["description"].startswith("Executes a given bash command")


def test_required_drops_names_without_a_property(declarations: dict[str, dict[str, Any]]) -> None:
    assert declarations["Edit"]["parameters"]["required"] == [
        "file_path",
        "old_string",
        "new_string",
    ]


def test_defs_are_inlined_with_enums_and_nullable(declarations: dict[str, dict[str, Any]]) -> None:
    todos = declarations["TodoWrite"]["parameters"]["properties"]["todos"]
    assert todos["type"] == "array"
    item = todos["items"]
    assert item["type"] == "object"
    assert item["required"] == ["content", "status", "activeForm"]
    assert item["properties"]["status"] == {
        "type": "string",
        "enum": ["pending", "in_progress", "completed"],
    }
    assert item["properties"]["content"] == {"type": "string", "minLength": 1}
    assert item["properties"]["priority"] == {
        "type": "string",
        "enum": ["high", "medium", "low"],
        "nullable": True,
    }


def test_type_arrays_formats_and_free_form_objects(declarations: dict[str, dict[str, Any]]) -> None:
    props = declarations["WebFetch"]["parameters"]["properties"]
    assert props["url"] == {"type": "string", "description": "The URL to fetch content from"}
    assert props["since"] == {
        "type": "string",
        "nullable": True,
        "format": "date-time",
        "description": "Only content newer than this",
    }
    assert props["headers"] == {"type": "object"}


def test_const_and_non_string_enums(declarations: dict[str, dict[str, Any]]) -> None:
    props = declarations["Grep"]["parameters"]["properties"]
    assert props["mode"] == {"type": "string", "enum": ["regex"]}
    assert props["head_limit"] == {"type": "integer", "format": "int32"}
    # Gemini enums are strings: integer choices are kept in words, the type stays integer.
    assert props["context"] == {"type": "integer", "description": "Allowed values: 0, 1, 2, 3."}
    assert props["output_mode"]["enum"] == ["content", "files_with_matches", "count"]
    assert "-n" in props


def test_recursive_ref_one_of_and_all_of(declarations: dict[str, dict[str, Any]]) -> None:
    props = declarations["mcp__tree__walk"]["parameters"]["properties"]
    root = props["root"]
    assert root["description"] == "Where to start"
    assert root["required"] == ["name"]
    assert root["properties"]["name"] == {"type": "string"}
    # The recursion is cut one level down instead of looping forever.
    assert root["properties"]["children"] == {"type": "array", "items": {"type": "object"}}
    assert props["depth"] == {"type": "integer", "minimum": 1, "nullable": True}
    assert props["filter"] == {
        "type": "object",
        "properties": {"glob": {"type": "string"}, "hidden": {"type": "boolean"}},
        "required": ["glob"],
    }


def test_tool_without_arguments_has_no_parameters(declarations: dict[str, dict[str, Any]]) -> None:
    assert declarations["ListMcpResourcesTool"] == {
        "name": "ListMcpResourcesTool",
        "description": "List available resources from configured MCP servers.",
    }


def test_invalid_names_are_sanitized_deterministically(
    declarations: dict[str, dict[str, Any]],
) -> None:
    name = gemini_name("mcp__my server/search")
    assert name in declarations
    assert name.startswith("mcp__my_server_search_")
    assert name == gemini_name("mcp__my server/search")
    assert gemini_name("mcp__my_server/search") != name  # no collision with a near twin
    assert gemini_name("Bash") == "Bash"
    assert gemini_name("9lives")[0] == "_"
    long = gemini_name("x" * 300)
    assert len(long) == 128 and long != gemini_name("x" * 299)


def test_cleaning_leaves_the_input_alone_and_is_remembered_per_table() -> None:
    schema = claude_code_tools()[2].parameters
    before = copy.deepcopy(schema)
    first = clean_parameters(schema)
    assert schema == before
    assert clean_parameters(copy.deepcopy(schema)) == first
    # Remembered by a caller's table (Reuse.memo), keyed by the schema's JSON: another
    # table (another gateway key) cleans its own copy.
    table, other = Reuse(), Reuse()
    key = orjson.dumps(schema)
    kept = table.memo(cleaned_parameters, key)
    assert kept == first and table.memo(cleaned_parameters, orjson.dumps(before)) is kept
    assert other.memo(cleaned_parameters, key) is not kept
