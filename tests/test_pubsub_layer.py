"""The Redis pub/sub layer (rooms.layers.redis_pubsub) on the real Redis: on one server or
shard, and on a Redis Cluster (rooms.layers.cluster_pubsub)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from functools import partial
from operator import not_

import pytest
import redis.asyncio

from rooms.layers.redis_pubsub import ResilientRedisPubSubChannelLayer
from tests.clients import wait_until

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


async def test_a_layer_that_lost_its_subscriptions_hears_every_publish_once_it_says_so(
    redis_url,
):
    # Its subscription connection killed, the layer is deaf to its groups (the consumer then
    # refuses messages) until Redis has confirmed every group subscribed again: a publish
    # sent the moment it no longer says so reaches its member.
    prefix = f"test-pubsub-{uuid.uuid4().hex[:12]}"
    members, sender = (
        ResilientRedisPubSubChannelLayer(prefix=prefix, hosts=[redis_url]) for _ in "ab"
    )
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        channel = await members.new_channel()
        await sender.new_channel()
        groups = [f"room{n}" for n in range(50)]
        for group in groups:
            await members.group_add(group, channel)
        for kill in range(10):
            await admin.client_kill_filter(_id=await _subscription_id(members, admin))
            deaf = partial(members.deaf_to, groups[0])
            assert await wait_until(deaf, bool, 5, interval=0.001), f"kill {kill}: never deaf"
            assert not await wait_until(deaf, not_, 5, interval=0.001), f"kill {kill}: deaf"
            for n, group in enumerate(groups):
                await sender.group_send(group, {"type": "room.event", "n": n})
            received = [(await asyncio.wait_for(members.receive(channel), 2))["n"] for _ in groups]
            assert sorted(received) == list(range(len(groups))), f"kill {kill}"
    finally:
        await admin.aclose()
        for layer in (members, sender):
            await layer.flush()


async def _subscription_id(layer, admin) -> str:
    """Redis' id for `layer`'s subscription connection, found by its local address."""
    (shard,) = layer._get_layer()._shards
    host, port = shard._pubsub.connection._writer.get_extra_info("sockname")[:2]
    for client in await admin.client_list(_type="pubsub"):
        if client["addr"] == f"{host}:{port}":
            return client["id"]
    raise AssertionError("no subscription connection found")
