"""The HTTP server's table of common header names (server/http.py HEADER_NAMES) stands in
for decoding and lower-casing a name: whatever a client sends, spelled in any case, the name
a request holds must be the one the long way gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from babelgate.server.http import _COMMON_HEADERS, HEADER_NAMES


def held(name: bytes) -> str:
    """The name as on_header keeps it."""
    return HEADER_NAMES.get(name) or name.decode("latin-1").lower()


def test_every_entry_is_the_long_way() -> None:
    assert len(HEADER_NAMES) >= len(_COMMON_HEADERS)
    for spelling, name in HEADER_NAMES.items():
        assert name == spelling.decode("latin-1").lower()


spellings = st.sampled_from(_COMMON_HEADERS).flatmap(
    lambda name: st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(name, upper,
                                                                     strict=True))))
others = st.binary(min_size=1, max_size=24)


@given(name=spellings.map(lambda text: text.encode("latin-1")) | others)
def test_any_spelling_is_held_as_the_long_way_holds_it(name: bytes) -> None:
    assert held(name) == name.decode("latin-1").lower()
