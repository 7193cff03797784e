"""Envelopes that carry provider data through clients."""

from babelgate.canonical.carry import attach_to_id, pack, split_id, unpack
from babelgate.canonical.ids import safe_call_id


def test_pack_round_trip_and_marker() -> None:
    packed = pack("gemini", {"sig": "abc+/=="})
    assert packed.startswith("bg1.")
    assert unpack(packed) == ("gemini", {"sig": "abc+/=="})


def test_real_signatures_are_not_envelopes() -> None:
    assert unpack("EqQBCkgIARABGAIiQL2nUu") is None
    assert unpack(None) is None
    assert unpack("bg1.not-base64-json") is None


def test_id_metadata_round_trip_stays_anthropic_valid() -> None:
    call_id = attach_to_id("call_1", {"thought_signature": "x/y+z=="})
    assert safe_call_id(call_id) == call_id  # only [A-Za-z0-9_-]
    assert split_id(call_id) == ("call_1", {"thought_signature": "x/y+z=="})
    assert split_id("call_plain") == ("call_plain", None)
    assert attach_to_id("call_2", None) == "call_2"


def test_safe_call_id_is_deterministic() -> None:
    assert safe_call_id("functions.Bash:0") == "functions_Bash_0"
    assert safe_call_id("toolu_01ABC-x_y") == "toolu_01ABC-x_y"
