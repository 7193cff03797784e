"""Byte templates (protocols/sse_templates.py) write exactly the bytes of the event they stand
for, whatever is put in their holes."""

from __future__ import annotations

import random

import orjson
import pytest

from babelgate.protocols.sse import sse
from babelgate.protocols.sse_templates import CUT, INT, RAW, cut, event_template

TEXTS = ["", "plain", '"quoted"', "100% sure", "%d %b %%", "\x00", "\u2028 \U0001f600", "\\"]


@pytest.mark.parametrize("name", ["delta", None])
def test_template_writes_the_event(name: str | None) -> None:
    template = event_template(name, {"n": INT, "s": RAW, "note": "50%", "list": [INT]})
    rng = random.Random(13)
    for text in TEXTS:
        n, m = rng.randrange(10**6), rng.randrange(-5, 5)
        data = {"n": n, "s": text, "note": "50%", "list": [m]}
        assert template % (n, orjson.dumps(text), m) == sse(orjson.dumps(data), name)


def test_cut_template_around_a_text() -> None:
    head, tail = cut(event_template("e", {"i": INT, "text": CUT, "seq": INT, "p": "%"}))
    for text in TEXTS:
        expected = sse(orjson.dumps({"i": 3, "text": text, "seq": 9, "p": "%"}), "e")
        assert head % 3 + orjson.dumps(text) + tail % 9 == expected

