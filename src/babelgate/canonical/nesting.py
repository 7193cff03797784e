"""JSON nested deeper than some step of the gateway can follow: the client's 400, never a 500.

No step checks depth in advance (checking costs as much as a fifth of decoding, on every piece
decoded fresh). Each step fails on its own when a value is too deep, and the gateway's
boundaries turn that failure into `too_deep()`:
- orjson decodes 1,024 levels and refuses more (a JSONDecodeError: "not valid JSON");
- msgspec, which splits large bodies, and Python's own walkers (the schema cleaners, tokens.py,
  error messages that show a value) end their stack with a RecursionError;
- orjson encodes only 254 levels: rendering an upstream's body around a deep client value fails
  with a JSONEncodeError ("Recursion limit reached").
What the client sent is refused with `too_deep()` (a 400) where the request is parsed and where
it is rendered for an upstream; a value too deep in an upstream's answer is the upstream's
fault, a 502 (server/gateway.py).
"""

from __future__ import annotations

import orjson

from .errors import GatewayError, invalid

# What the steps above raise on a value too deep for them. JSONEncodeError is also what orjson
# raises for a value it cannot encode at all (an integer past 64 bits); from a client's decoded
# body that too is the client's value, never our fault.
TOO_DEEP = (RecursionError, orjson.JSONEncodeError)


def too_deep(error: BaseException) -> GatewayError:
    """The 400 for a client's value that a step could not follow (`error`: what it raised)."""
    if isinstance(error, RecursionError) or "Recursion limit" in str(error):
        return invalid("request body nests too deep for the gateway to translate "
                       "(keep JSON under 250 levels)")
    return invalid(f"request body holds a value that cannot be encoded as JSON: {error}")
