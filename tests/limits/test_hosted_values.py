"""What routing shares between processes (server/shared_routing.py) is kept by the supervisor of
`serve --workers` as Redis keeps it: the same commands, sent to a real Redis and to the
supervisor's socket, get the same replies."""

from __future__ import annotations

import secrets

from babelgate.limits.hosted import CountServer
from babelgate.limits.resp import Reply, RespClient

REDIS = "redis://127.0.0.1:6379/0"


async def replies(client: RespClient, prefix: str) -> list[Reply]:
    version, rests = f"{prefix}version", f"{prefix}rests"
    out = [await client.call("GET", version), await client.call("INCR", version),
           await client.call("INCR", version), await client.call("GET", version),
           await client.call("HGETALL", rests),
           await client.call("HSET", rests, "a\0m", b'{"until": 1}'),
           await client.call("HSET", rests, "a\0m", b'{"until": 2}', "b\0k", b"{}"),
           await client.call("EXPIRE", rests, 86400)]
    pairs = await client.call("HGETALL", rests)
    assert isinstance(pairs, list)
    out.append(sorted(zip(pairs[::2], pairs[1::2], strict=True)))  # a hash has no order
    out += [await client.call("HDEL", rests, "a\0m", "gone"),
            await client.call("HGETALL", rests), await client.call("HDEL", rests, "b\0k"),
            await client.call("HGETALL", rests)]
    return out


async def test_the_supervisor_answers_routings_commands_as_redis_does() -> None:
    server = CountServer()
    await server.start()
    hosted, redis = RespClient(f"unix://{server.path}"), RespClient(REDIS)
    prefix = f"bgtest:{secrets.token_hex(6)}:"
    try:
        from_redis = await replies(redis, prefix)
        assert from_redis[:4] == [None, 1, 2, b"2"]  # the sequence does what it says
        assert await replies(hosted, prefix) == from_redis
    finally:
        await redis.call("DEL", f"{prefix}version", f"{prefix}rests")
        await hosted.close()
        await redis.close()
        await server.stop()
