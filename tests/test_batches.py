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


@pytest.fixture
def cluster_settings(settings, redis_cluster, redis_cluster_url):
    settings.REDIS_CLUSTER = True
    settings.REDIS_URLS = redis_cluster_url.split(",")
    for node in redis_cluster.nodes:  # commandstats count this test's calls only
        with node.client() as client:
            client.config_resetstat()
    return redis_cluster


def evalsha_calls(server) -> int:
    with server.client() as client:
        stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0})
    return stats["calls"] - stats.get("failed_calls", 0) - stats.get("rejected_calls", 0)


def evalsha_attempts(server) -> int:
    """EVALSHA commands the server received, those it refused (MOVED) included."""
    with server.client() as client:
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return stats.get("calls", 0) + stats.get("rejected_calls", 0)


async def test_cluster_calls_made_together_each_get_their_reply_from_their_slots_master(
    cluster_settings,
):
    keys = [f"{{room.{n}}}:seq" for n in range(60)]
    owners = [cluster_settings.node_for(key) for key in keys]
    replies = await asyncio.gather(
        *(batches.call(0, ECHO, [key], [n]) for n, key in enumerate(keys))
    )
    assert replies == [[key.encode(), str(n).encode()] for n, key in enumerate(keys)]
    for node in cluster_settings.nodes:  # each master ran the calls of its own slots
        assert evalsha_calls(node) == sum(owner is node for owner in owners)


async def test_cluster_a_failing_call_fails_alone(cluster_settings):
    replies = await asyncio.gather(
        *(batches.call(0, FAIL_ON_ODD, [f"{{room.{n}}}"], [n]) for n in range(6)),
        return_exceptions=True,
    )
    assert replies[0::2] == [1, 1, 1]
    assert all(isinstance(reply, ResponseError) for reply in replies[1::2])


async def test_cluster_calls_of_a_slot_that_moved_reach_its_new_master(cluster_settings):
    key = "{room.moving}:seq"
    assert await batches.call(0, ECHO, [key], [1]) == [key.encode(), b"1"]  # slots learnt
    slot = cluster_settings.slot(key)
    old = cluster_settings.node_for(key)
    new = next(node for node in cluster_settings.nodes if node is not old)
    move_slot(cluster_settings, slot, new)
    try:
        # The client still places the slot on its old master, which answers MOVED.
        replies = await asyncio.gather(*(batches.call(0, ECHO, [key], [n]) for n in range(3)))
        assert replies == [[key.encode(), str(n).encode()] for n in range(3)]
        assert evalsha_calls(new) == 3
        redirected = evalsha_attempts(old)
        assert await batches.call(0, ECHO, [key], [4]) == [key.encode(), b"4"]
        assert evalsha_calls(new) == 4  # the next turn went straight to the new master
        assert evalsha_attempts(old) == redirected
    finally:
        move_slot(cluster_settings, slot, old)


def move_slot(cluster, slot: int, owner) -> None:
    """Give an empty slot to `owner`, as a resharding does once its keys are migrated."""
    with owner.client() as client:
        owner_id = client.execute_command("CLUSTER MYID")
    for node in cluster.nodes:
        with node.client() as client:
            client.execute_command("CLUSTER SETSLOT", slot, "NODE", owner_id)
    cluster.wait_ok()
