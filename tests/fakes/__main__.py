"""Run one fake upstream as its own process, for manual runs and agent experiments:

    python -m tests.fakes --protocol anthropic --port 8101 [--mode gemini3] [--preset deepseek]

It serves the default agent brain until interrupted and logs each request path to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

import orjson

from . import FAKES, RecordedRequest


async def serve(args: argparse.Namespace) -> None:
    fake = FAKES[args.protocol](api_key=args.api_key, modes=args.mode, preset=args.preset)
    await fake.start(args.host, args.port)
    print(f"fake {args.protocol} listening on {fake.base_url}", file=sys.stderr, flush=True)
    seen_requests = seen_rejections = 0
    while True:
        await asyncio.sleep(0.2)
        for rec in fake.requests[seen_requests:]:
            seen_requests += 1
            print(f"{rec.method} {rec.path}", file=sys.stderr, flush=True)
            if args.dump:
                dump(Path(args.dump) / f"{seen_requests:03d}.json", rec)
        for status, message in fake.rejections[seen_rejections:]:
            seen_rejections += 1
            print(f"  rejected {status}: {message}", file=sys.stderr, flush=True)


def dump(path: Path, rec: RecordedRequest) -> None:
    """Write one request (headers, query, body) as JSON, to study what a client sends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "method": rec.method,
        "path": rec.path,
        "query": rec.query,
        "headers": rec.headers,
        "body": rec.body,
    }
    path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes")
    parser.add_argument("--protocol", choices=sorted(FAKES), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument(
        "--mode", action="append", default=[], help="deepseek_thinking, gemini3 (repeatable)"
    )
    parser.add_argument("--preset", default=None)
    parser.add_argument("--dump", default=None, help="write each request as JSON into this dir")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
