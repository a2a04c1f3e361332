"""A nickname is freed even when Redis fails its release (rooms.state.retries)."""

import pytest

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
