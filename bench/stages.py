"""Where one translated request's CPU time goes, stage by stage, without the network.

`python bench/stages.py BODIES_DIR [BODY ...]` (BODIES_DIR written by bench/bodies.py) runs
each stage of the gateway's hot path in-process on the benchmark bodies and prints the mean
microseconds per call: parse the client JSON, client codec -> canonical Request, canonical ->
upstream body, serialise it, then the upstream's canned answer back (parse_response and
render_response, or the stream decoder and encoder fed the whole canned stream at once), and
the size of what the client gets. It uses the codecs through their public interface
(protocols/base.py) with each family's default quirks, as an unconfigured provider of that
type would; the server, the HTTP client and the event loop are not included, so the stages
add up to less than a request costs under load (compare with bench/profile.sh).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from msgspec.structs import replace

# The paths bench/pipeline.py counts instructions on (this script's folder is on sys.path):
# body -> (client protocol, upstream protocol, upstream model, canned answer file stem).
from pipeline import PATHS

from babelgate.protocols import get_codec
from babelgate.protocols.reuse import Reuse
from babelgate.providers.presets import DEFAULT_QUIRKS

BUDGET_SECONDS = 0.3  # per stage: enough for a stable mean, short enough for a quick look


def _time(stage: Callable[[], Any]) -> float:
    """Mean microseconds per call of `stage`, repeated for about BUDGET_SECONDS."""
    stage()  # warm caches (tool-name maps and the like) as a running gateway has them
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < BUDGET_SECONDS:
        stage()
        calls += 1
    return elapsed / calls * 1e6


def measure(bodies: Path, body: str) -> list[tuple[str, float, str]]:
    client_name, upstream_name, model, answer = PATHS[body]
    client, upstream = get_codec(client_name), get_codec(upstream_name)
    quirks = DEFAULT_QUIRKS[upstream_name]
    # Every call gets a new turn of the same conversation (bench/bodies.py marks the last two
    # items), as a session's requests do: what repeats is reused, the new turn is not. The
    # claude_code_distinct body is marked everywhere: each call is a new conversation.
    template = (bodies / f"{body}.json").read_bytes()
    turns = itertools.count()

    def new_turn() -> bytes:
        return template.replace(b"@turn@", str(next(turns)).encode())

    reuse = Reuse()  # as the gateway's table for one caller
    making = _time(new_turn)  # subtracted from the stages that take a new turn
    raw = new_turn()
    data = reuse.loads(raw)
    request = client.parse_request(data, reuse)
    stream = bool(request.stream)
    up_request = replace(request, model=model)
    up_body = upstream.render_request(up_request, quirks, reuse)
    loads_us = _time(lambda: reuse.loads(new_turn()))
    parse_us = _time(lambda: client.parse_request(reuse.loads(new_turn()), reuse))
    rows = [
        ("client JSON -> dict, a new turn (reuse.loads)", loads_us - making, f"{len(raw)} B"),
        ("client dict -> Request, a new turn (parse_request)", parse_us - loads_us, ""),
        # A new turn's Request, as in the gateway: rendering one Request over and over would
        # find every rendering kept, even for a body whose pieces never repeat.
        ("Request -> upstream dict, a new turn (render_request)",
         _time(lambda: upstream.render_request(
             replace(client.parse_request(reuse.loads(new_turn()), reuse), model=model),
             quirks, reuse))
         - parse_us, ""),
        ("upstream dict -> bytes (orjson.dumps)", _time(lambda: orjson.dumps(up_body)),
         f"{len(orjson.dumps(up_body))} B"),
    ]
    if stream:
        canned = (bodies / "upstream" / f"{answer}.sse").read_bytes()

        def decode() -> list[Any]:
            decoder = upstream.stream_decoder(up_request, reuse)
            return decoder.feed(canned) + decoder.close()

        events = decode()

        def encode() -> bytes:
            encoder = client.stream_encoder(request, reuse)
            return b"".join(encoder.encode(event) for event in decode())

        out = encode()
        decode_us = _time(decode)
        rows += [
            ("upstream SSE -> events (stream_decoder)", decode_us,
             f"{len(canned)} B -> {len(events)} events"),
            ("events -> client SSE (stream_encoder)", _time(encode) - decode_us,
             f"{len(out)} B"),
        ]
    else:
        canned = (bodies / "upstream" / f"{answer}.json").read_bytes()
        parsed = upstream.parse_response(orjson.loads(canned), up_request, reuse)
        rendered = client.render_response(parsed, request, reuse)
        rows += [
            ("upstream answer -> Response (loads + parse_response)",
             _time(lambda: upstream.parse_response(orjson.loads(canned), up_request, reuse)),
             f"{len(canned)} B"),
            ("Response -> client bytes (render_response + dumps)",
             _time(lambda: orjson.dumps(client.render_response(parsed, request, reuse))),
             f"{len(orjson.dumps(rendered))} B"),
        ]
    return rows


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python bench/stages.py BODIES_DIR [BODY ...]")
    bodies = Path(argv[0])
    for body in argv[1:] or list(PATHS):
        client_name, upstream_name, _, _ = PATHS[body]
        rows = measure(bodies, body)
        print(f"\n{body} ({client_name} client -> {upstream_name} upstream)\n")
        print("| stage | µs per call | size |\n|---|---:|---|")
        for name, micros, size in rows:
            print(f"| {name} | {micros:,.0f} | {size} |")
        print(f"| total | {sum(m for _, m, _ in rows):,.0f} | |")


if __name__ == "__main__":
    main(sys.argv[1:])
