"""The Redis pub/sub layer (rooms.layers.redis_pubsub) on the real Redis: on one server or
shard, and on a Redis Cluster (rooms.layers.cluster_pubsub)."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from rooms.layers.redis_pubsub import ResilientRedisPubSubChannelLayer

pytestmark = pytest.mark.redis

GROUPS = 300


@pytest.fixture(params=["server", "cluster"])
def layer_config(request) -> dict:
    """The layer's configuration on the test Redis, then on the run's cluster."""
    if request.param == "server":
        return {"hosts": [request.getfixturevalue("redis_url")]}
    urls = request.getfixturevalue("redis_cluster_url").split(",")
    return {"hosts": urls, "cluster": True}


@pytest.fixture
async def two_layers(layer_config) -> AsyncIterator[tuple]:
    """Two layers as of two processes: the first's members, the second's publishes."""
    prefix = f"test-pubsub-{uuid.uuid4().hex[:12]}"
    layers = [ResilientRedisPubSubChannelLayer(prefix=prefix, **layer_config) for _ in range(2)]
    yield layers
    for layer in layers:
        await layer.flush()


async def test_a_group_send_right_after_group_add_returns_reaches_the_new_member(two_layers):
    # As a joiner's own join event follows its join: group_add returns once Redis has
    # confirmed the group's subscription, so a publish sent next on another connection
    # cannot reach Redis first and be lost.
    members, sender = two_layers
    channel = await members.new_channel()
    await sender.new_channel()  # as any process has before it publishes: its client is ready
    for n in range(GROUPS):
        await members.group_add(f"fresh{n}", channel)
        await sender.group_send(f"fresh{n}", {"type": "room.event", "n": n})
    received = set()
    try:
        while len(received) < GROUPS:
            received.add((await asyncio.wait_for(members.receive(channel), 2))["n"])
    except TimeoutError:
        pass
    missed = sorted(set(range(GROUPS)) - received)
    assert not missed, f"{len(missed)} of {GROUPS} publishes lost: groups {missed[:20]}"
