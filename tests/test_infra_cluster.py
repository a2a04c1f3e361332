"""The Redis Cluster harness (tests/cluster.py): it forms, places keys and scripts by slot,
heals after a master restarts, and carries sharded pub/sub with redis-py 7.4's asyncio client."""

import asyncio
import time

import pytest
import redis
import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from tests.cluster import SLOTS, Cluster

# The keys of one room, as a cluster-safe sequence script would declare them.
ROOM_KEYS = ["{Room1}:seq", "{Room1}:recent", "{Room1}:events", b"{Room1}:presence"]
# The message script's shape: every key it touches declared, all in one slot.
APPEND = """
local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], id, ARGV[1])
return id
"""


@pytest.fixture
async def cluster_client(redis_cluster_url: str):
    client = RedisCluster.from_url(redis_cluster_url.split(",")[0])
    yield client
    await client.aclose()


async def wait_for_message(pubsub: PubSub, timeout: float = 5.0) -> dict | None:
    """The next message, subscribe confirmations included; None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await pubsub.get_message(timeout=deadline - time.monotonic())
        if message is not None:
            return message
    return None


def test_three_masters_form_one_cluster_with_every_slot_covered(
    redis_cluster: Cluster, redis_cluster_url: str
):
    seeds = [f"redis://127.0.0.1:{node.port}/0" for node in redis_cluster.nodes]
    assert redis_cluster_url == ",".join(seeds)
    for node in redis_cluster.nodes:
        info = redis_cluster.info(node)
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_ok"] == str(SLOTS)
        assert info["cluster_known_nodes"] == "3"
        assert info["cluster_size"] == "3"  # three masters, each serving slots


@pytest.mark.parametrize("key", ROOM_KEYS, ids=str)
def test_keys_sharing_a_hash_tag_land_in_the_slot_of_the_tag(redis_cluster: Cluster, key):
    assert redis_cluster.slot(key) == redis_cluster.slot("Room1") == key_slot(b"Room1")


def test_rooms_spread_over_every_master(redis_cluster: Cluster):
    owners = {redis_cluster.node_for(f"{{Room{n}}}:seq").port for n in range(30)}
    assert owners == {node.port for node in redis_cluster.nodes}


async def test_a_script_declaring_its_keys_runs_on_the_master_owning_their_slot(
    redis_cluster: Cluster, cluster_client: RedisCluster
):
    keys = ["{Room1}:seq", "{Room1}:recent"]
    assert await cluster_client.eval(APPEND, 2, *keys, "hello") == 1
    assert await cluster_client.eval(APPEND, 2, *keys, "again") == 2
    owner = redis_cluster.node_for("Room1")
    with owner.client() as client:
        assert client.zrange("{Room1}:recent", 0, -1) == [b"hello", b"again"]
        assert client.dbsize() == 2
    for node in redis_cluster.nodes:
        if node is not owner:
            with node.client() as client:
                assert client.dbsize() == 0


async def test_a_script_touching_a_key_of_another_master_is_refused(redis_cluster: Cluster):
    owner = redis_cluster.node_for("Room1")
    elsewhere = next(
        key
        for key in (f"{{Room{n}}}:seq" for n in range(2, 100))
        if redis_cluster.node_for(key) is not owner
    )
    script = "redis.call('INCR', KEYS[1]); return redis.call('INCR', ARGV[1])"
    client = redis.asyncio.Redis.from_url(owner.url)
    try:
        with pytest.raises(redis.ResponseError, match="non local key"):
            await client.eval(script, 1, "{Room1}:seq", elsewhere)
        with pytest.raises(redis.exceptions.ClusterCrossSlotError):
            await client.eval("return 1", 2, "{Room1}:seq", "{Room2}:seq")
    finally:
        await client.aclose()


async def test_a_master_stopped_and_started_again_serves_its_slots_and_the_cluster_is_ok(
    redis_cluster: Cluster, cluster_client: RedisCluster
):
    owner = redis_cluster.node_for("Room1")
    with owner.client() as client:
        node_id = client.execute_command("CLUSTER MYID")
    await cluster_client.set("{Room1}:seq", 41)
    owner.stop()
    others = [node for node in redis_cluster.nodes if node is not owner]
    deadline = time.monotonic() + 15
    while any(redis_cluster.info(node)["cluster_state"] != "fail" for node in others):
        assert time.monotonic() < deadline, "the other masters never saw the master fail"
        await asyncio.sleep(0.1)

    owner.start()
    redis_cluster.wait_ok()
    assert redis_cluster.node_for("Room1") is owner
    with owner.client() as client:
        assert client.execute_command("CLUSTER MYID") == node_id
    # Nothing is saved: the slots come back, their keys do not.
    assert await cluster_client.get("{Room1}:seq") is None
    assert await cluster_client.incr("{Room1}:seq") == 1


def test_a_crashed_master_comes_back_with_heal_and_restart_waits_until_the_cluster_is_ok(
    redis_cluster: Cluster, redis_cluster_url: str
):
    node = redis_cluster.nodes[2]
    node.kill()
    assert not node.running and not redis_cluster.healthy()
    redis_cluster.heal()
    assert redis_cluster.healthy()
    redis_cluster.restart(node)
    assert redis_cluster.healthy()


async def test_spublish_reaches_an_ssubscribe_client_of_the_master_owning_the_channel(
    redis_cluster: Cluster, cluster_client: RedisCluster
):
    channel = "{Room1}:events"
    owner = redis_cluster.node_for(channel)
    subscriber = redis.asyncio.Redis.from_url(owner.url)
    pubsub = subscriber.pubsub()
    try:
        # redis-py 7.4's asyncio PubSub has no ssubscribe(): the raw command, on the owner.
        await pubsub.execute_command("SSUBSCRIBE", channel)
        assert await wait_for_message(pubsub) == {
            "type": "ssubscribe",
            "pattern": None,
            "channel": channel.encode(),
            "data": 1,
        }
        # The asyncio RedisCluster has no spublish(): the command, routed by the channel's slot.
        assert await cluster_client.execute_command("SPUBLISH", channel, "hello") == 1
        with owner.client() as client:
            assert client.spublish(channel, "again") == 1
        for data in (b"hello", b"again"):
            assert await wait_for_message(pubsub) == {
                "type": "smessage",
                "pattern": None,
                "channel": channel.encode(),
                "data": data,
            }
        assert await pubsub.get_message(timeout=0.2) is None
    finally:
        await pubsub.aclose()
        await subscriber.aclose()


@pytest.mark.parametrize("command", ["SSUBSCRIBE", "SPUBLISH"])
def test_a_master_not_owning_the_channel_redirects_sharded_pub_sub(redis_cluster: Cluster, command):
    channel = "{Room1}:events"
    owner = redis_cluster.node_for(channel)
    other = next(node for node in redis_cluster.nodes if node is not owner)
    args = [channel] if command == "SSUBSCRIBE" else [channel, "hello"]
    with other.client() as client, pytest.raises(redis.exceptions.MovedError) as moved:
        client.execute_command(command, *args)
    assert str(moved.value) == f"{redis_cluster.slot(channel)} 127.0.0.1:{owner.port}"


def test_redis_py_asyncio_has_no_sharded_pub_sub_api_yet():
    """The workarounds above and in docs/scaling.md hold for redis-py 7.4; redis-py 8 adds
    RedisCluster.pubsub() and PubSub.ssubscribe() (redis/redis-py#3736): revisit them then."""
    assert redis.__version__ == "7.4.1"
    assert not hasattr(PubSub, "ssubscribe")
    assert not hasattr(RedisCluster, "pubsub")
    assert not hasattr(RedisCluster, "spublish")
