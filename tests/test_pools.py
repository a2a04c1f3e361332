"""Redis connection pools under bursts (rooms.state.pools), on the real Redis."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from rooms.layers.redis_pubsub import ResilientRedisPubSubChannelLayer
from rooms.state.pools import waiting_pool


@pytest.fixture
async def key(redis_url: str) -> AsyncIterator[str]:
    name = f"test-pools-{uuid.uuid4().hex[:12]}"
    yield name
    async with aioredis.Redis.from_url(redis_url) as client:
        await client.delete(name)


def keep_busy(loop: asyncio.AbstractEventLoop, seconds: float) -> Callable[[], None]:
    """Make every turn of `loop` take `seconds` of CPU, as thousands of connections do;
    returns what stops it."""
    running = True

    def turn() -> None:
        if running:
            time.sleep(seconds)
            loop.call_soon(turn)

    def stop() -> None:
        nonlocal running
        running = False

    loop.call_soon(turn)
    return stop


async def test_a_burst_far_larger_than_the_pool_waits_its_turn_on_a_busy_loop(redis_url, key):
    # 1,000 commands on 4 connections, each turn of the loop 2 ms of other work: about
    # 2 s for them all, none refused and no fifth connection opened.
    client = aioredis.Redis.from_pool(waiting_pool(redis_url, 4, timeout=30.0))
    stop = keep_busy(asyncio.get_running_loop(), 0.002)
    try:
        results = await asyncio.gather(*(client.incr(key) for _ in range(1000)))
    finally:
        stop()
    assert sorted(results) == list(range(1, 1001))
    pool = client.connection_pool
    assert len(pool._available_connections) + len(pool._in_use_connections) <= 4
    await client.aclose()


async def test_a_command_gives_up_after_the_pool_timeout_while_every_connection_is_held(
    redis_url, key
):
    client = aioredis.Redis.from_pool(waiting_pool(redis_url, 1, timeout=0.5))
    holder = asyncio.ensure_future(client.blpop([key], timeout=2))  # holds the one connection
    await asyncio.sleep(0.1)
    start = time.monotonic()
    with pytest.raises(RedisConnectionError, match="No connection available"):
        await client.get(key)
    assert 0.4 < time.monotonic() - start < 1.5
    assert await holder is None
    assert await client.incr(key) == 1  # the connection, and its turn, came back
    await client.aclose()


async def test_a_burst_of_layer_sends_shares_the_bounded_pool_and_all_arrive(redis_url, settings):
    settings.REDIS_POOL_SIZE = 2
    prefix = f"test-pools-{uuid.uuid4().hex[:12]}"
    layer = ResilientRedisPubSubChannelLayer(hosts=[redis_url], prefix=prefix)
    watcher = aioredis.Redis.from_url(redis_url)
    before = (await watcher.info("clients"))["connected_clients"]
    channel = await layer.new_channel()
    await asyncio.gather(*(layer.send(channel, {"type": "n", "n": n}) for n in range(300)))
    got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(300)]
    assert sorted(got) == list(range(300))
    opened = (await watcher.info("clients"))["connected_clients"] - before
    assert opened <= 3, f"{opened} connections for a pool of 2 and the subscription"
    await layer.flush()
    await watcher.aclose()
