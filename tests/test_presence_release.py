"""Presence under Redis faults: a release Redis refused is retried (rooms.state.retries); the
heartbeat keeps a connection of its own."""

import asyncio
import time

import pytest

from rooms.state import clients
from rooms.state.redis_presence import RedisPresence
from tests.clients import wait_until
from tests.redis_server import RedisServer


@pytest.fixture
def lasting_redis(tmp_path, settings):
    """A redis-server of the test's own that keeps its keys across a restart (AOF), as the
    process's state client's only Redis."""
    server = RedisServer(tmp_path / "redis", args=("--appendonly", "yes"))
    server.start()
    settings.REDIS_URL = server.url
    settings.REDIS_URLS = [server.url]
    yield server
    server.stop()


@pytest.mark.redis
async def test_a_release_refused_while_redis_is_down_frees_the_name_once_redis_is_back(
    lasting_redis,
):
    presence = RedisPresence("retry", 15)
    await presence.claim("Room1", "room.Room1", "Nick", "channel-1")
    lasting_redis.stop()
    await presence.release("Room1", "room.Room1", "Nick", "channel-1")  # refused, not raised
    lasting_redis.start()
    members = lasting_redis.client().hkeys("retry:members:room.Room1")
    assert members == [b"nick"], "the restart kept the claim the release could not undo"
    assert await wait_until(lambda: presence.members("room.Room1"), lambda got: got == []) == []
    newcomer = RedisPresence("retry", 15)
    await newcomer.claim("Room1", "room.Room1", "Nick", "channel-2")  # the name is free
    assert await presence.members("room.Room1") == ["Nick"]
    await newcomer.close()
    await presence.close()


@pytest.mark.redis
async def test_the_heartbeat_does_not_wait_behind_a_burst_holding_every_pooled_connection(
    redis_env, settings
):
    settings.REDIS_URL = redis_env["REDIS_URL"]
    settings.REDIS_URLS = [redis_env["REDIS_URL"]]
    settings.REDIS_POOL_SIZE = 1
    prefix = redis_env["REDIS_PREFIX"]
    presence = RedisPresence(prefix, 15)
    await presence.claim("Room1", "room.Room1", "Nick", "channel-1")
    holder = asyncio.ensure_future(clients.connect(0).blpop([f"{prefix}:never"], timeout=3))
    await asyncio.sleep(0.1)  # the one pooled connection is busy for 3 s
    started = time.monotonic()
    await presence.beat()
    assert time.monotonic() - started < 1
    assert await holder is None
    await presence.close()
