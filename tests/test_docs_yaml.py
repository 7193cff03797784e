"""Every YAML example in the README and docs/ is valid YAML: users copy them as they are.
(The worked provider examples once used `{..., api_key: ${VAR}}` flow mappings, which YAML
reads as a nested mapping and refuses.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.M | re.S)


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((path.name, line, match.group(1)))
    return found


BLOCKS = _blocks()


def test_the_docs_have_yaml_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize(("name", "line", "text"), BLOCKS,
                         ids=[f"{n}:{line}" for n, line, _ in BLOCKS])
def test_yaml_example_parses(name: str, line: int, text: str) -> None:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        pytest.fail(f"{name} line {line}: the YAML example does not parse: {exc}")
