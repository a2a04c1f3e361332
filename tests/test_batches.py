"""Script calls made in one event-loop turn go to their shard in one pipeline
(rooms.state.batches), against Redis servers of the test's own."""

import asyncio

import pytest
from redis.exceptions import ResponseError

from rooms.state import batches, clients

pytestmark = pytest.mark.redis

ECHO = batches.script("return {KEYS[1], ARGV[1]}")
FAIL_ON_ODD = batches.script("if tonumber(ARGV[1]) % 2 == 1 then error('odd') end return 1")


@pytest.fixture
def shard_settings(settings, redis_shards):
    settings.REDIS_URLS = [server.url for server in redis_shards]
    return redis_shards


async def test_calls_made_together_each_get_their_own_reply_from_their_shard(shard_settings):
    calls = [batches.call(n % 2, ECHO, [f"key{n}"], [n]) for n in range(40)]
    replies = await asyncio.gather(*calls)
    assert replies == [[f"key{n}".encode(), str(n).encode()] for n in range(40)]
    for server in shard_settings:  # each shard ran its half; the script was loaded once
        with server.client() as client:
            stats = client.info("commandstats")
        evalsha = stats["cmdstat_evalsha"]
        assert evalsha["calls"] - evalsha["failed_calls"] - evalsha["rejected_calls"] == 20
        assert stats["cmdstat_script|load"]["calls"] == 1


async def test_a_failing_call_fails_alone(shard_settings):
    replies = await asyncio.gather(
        *(batches.call(0, FAIL_ON_ODD, [], [n]) for n in range(4)), return_exceptions=True
    )
    assert replies[0] == replies[2] == 1
    assert all(isinstance(reply, ResponseError) for reply in (replies[1], replies[3]))


async def test_a_shard_that_forgot_the_scripts_gets_them_again(shard_settings):
    assert await batches.call(1, ECHO, ["a"], [1]) == [b"a", b"1"]
    await clients.connect(1).script_flush()
    assert await asyncio.gather(
        batches.call(1, ECHO, ["b"], [2]), batches.call(1, ECHO, ["c"], [3])
    ) == [
        [b"b", b"2"],
        [b"c", b"3"],
    ]
