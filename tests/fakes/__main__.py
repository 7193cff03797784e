"""Run one fake upstream as its own process, for manual runs and agent experiments:

    python -m tests.fakes --protocol anthropic --port 8101 [--mode gemini3] [--preset deepseek]

It serves the default agent brain until interrupted and logs each request path to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from . import FAKES


async def serve(args: argparse.Namespace) -> None:
    fake = FAKES[args.protocol](api_key=args.api_key, modes=args.mode, preset=args.preset)
    await fake.start(args.host, args.port)
    print(f"fake {args.protocol} listening on {fake.base_url}", file=sys.stderr, flush=True)
    seen = 0
    while True:
        await asyncio.sleep(0.2)
        for rec in fake.requests[seen:]:
            print(f"{rec.method} {rec.path}", file=sys.stderr, flush=True)
        for status, message in fake.rejections[seen:]:
            print(f"  rejected {status}: {message}", file=sys.stderr, flush=True)
        seen = len(fake.requests)


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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
