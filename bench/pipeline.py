"""The gateway's in-process work for one request, run N times: for counting instructions.

`python bench/pipeline.py BODIES_DIR BODY N` (BODIES_DIR written by bench/bodies.py) takes a
new turn of BODY's conversation each time (the `@turn@` mark gets a new number, as in
bench/post.lua), and does what the gateway does with it without the network: decode the
client body (protocols/reuse.py, or the client codec's typed reader), parse it, render and
serialise the upstream body, then turn the upstream's canned answer (the whole stream, for
a streamed body) into the client's bytes. A few warm-up turns come first, as a running
gateway has seen the conversation before.

bench/instructions.sh runs this under valgrind and reports instructions per request: unlike
time on a shared 2-core machine, the count repeats to within a fraction of a percent, so a
change of a few percent shows.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import orjson
from msgspec.structs import replace

from babelgate import tokens
from babelgate.protocols import get_codec
from babelgate.protocols.reuse import Reuse, loads_object
from babelgate.providers.presets import DEFAULT_QUIRKS

# body -> (client protocol, upstream protocol, upstream model, canned answer file stem)
PATHS = {
    "hello": ("anthropic", "openai", "canned-model", "chat"),
    "hello_stream": ("anthropic", "openai", "canned-model", "chat"),
    "claude_code": ("anthropic", "openai", "canned-model", "chat"),
    "claude_code_stream": ("anthropic", "openai", "canned-model", "chat"),
    "claude_code_distinct": ("anthropic", "openai", "canned-model", "chat"),
    "codex": ("openai-responses", "anthropic", "claude-sonnet-4-5-20250929", "anthropic"),
    "codex_stream": ("openai-responses", "anthropic", "claude-sonnet-4-5-20250929", "anthropic"),
    "chat_gemini": ("openai", "gemini", "gemini-2.5-pro", "gemini"),
    "chat_gemini_stream": ("openai", "gemini", "gemini-2.5-pro", "gemini"),
}
WARM_TURNS = 3  # BENCH_WARM: e.g. 150 for claude_code_distinct, whose table is full by then
# How far each request goes (BENCH_UNTIL): the instructions of a stage are the difference
# between two counts. "all" is the whole request.
UNTIL = ("loads", "parse", "render", "all")


def main(bodies: Path, body: str, turns: int, until: str = "all") -> None:
    client_name, upstream_name, model, answer = PATHS[body]
    client, upstream = get_codec(client_name), get_codec(upstream_name)
    quirks = DEFAULT_QUIRKS[upstream_name]
    template = (bodies / f"{body}.json").read_bytes()
    stream = bool(orjson.loads(template).get("stream"))
    canned = (bodies / "upstream" / f"{answer}.{'sse' if stream else 'json'}").read_bytes()
    # As the gateway's table for one caller; BENCH_REUSE_MB as server.reuse_mb (0: off).
    budget = os.environ.get("BENCH_REUSE_MB")
    reuse = Reuse(int(float(budget) * 2**20)) if budget is not None else Reuse()

    def one(turn: int) -> bytes:
        raw = template.replace(b"@turn@", b"%d" % turn)
        # As the gateway reads a body (server/app.py): the table's pieces, else the codec's
        # typed reader (which parses too: "loads" then counts both), else one decode.
        data = reuse.lookup(raw)
        request = client.read_request(raw, reuse) if data is None else None
        if request is None and data is None:
            data = loads_object(raw)
        if until == "loads":
            return b""
        if request is None:
            assert data is not None
            request = client.parse_request(data, reuse)
        if until == "parse":
            return b""
        upstream_request = replace(request, model=model, stream=stream)
        orjson.dumps(upstream.render_request(upstream_request, quirks, reuse))
        if until == "render":
            return b""
        if not stream:
            answer = upstream.parse_response(orjson.loads(canned), upstream_request, reuse)
            return orjson.dumps(client.render_response(answer, request, reuse))
        decoder = upstream.stream_decoder(upstream_request, reuse)
        if not decoder.input_at_start:  # as the gateway (server/gateway.py, _translate_stream)
            tokens.quick_estimate(request, reuse)
        encoder = client.stream_encoder(request, reuse)
        # As the gateway: one batch per read, then the close's (a tree from before
        # encode_batch, run with PYTHONPATH for a comparison, one event at a time).
        batch = getattr(encoder, "encode_batch", None)
        if batch is None:
            return b"".join(map(encoder.encode, decoder.feed(canned) + decoder.close()))
        return batch(decoder.feed(canned)) + batch(decoder.close())

    for turn in range(int(os.environ.get("BENCH_WARM", WARM_TURNS))):
        one(turn)
    for turn in range(turns):
        one(1_000_000 + turn)  # numbers no warm-up turn had


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python bench/pipeline.py BODIES_DIR BODY N")
    if os.environ.get("BENCH_GC") == "gateway":
        # Collect as the gateway does (App.start): what is built so far frozen, young objects
        # collected every 20,000 allocations rather than 700. With the default thresholds a
        # body whose pieces are all new (thousands of objects) pays for many more collections
        # here than in the gateway.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
    until = os.environ.get("BENCH_UNTIL", "all")
    if until not in UNTIL:
        sys.exit(f"BENCH_UNTIL: one of {', '.join(UNTIL)}")
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), until)
