"""Two server processes on a Redis Cluster of three masters (REDIS_CLUSTER=1): each room's
keys in its slot, its events on sharded pub/sub on the master owning that slot."""

import asyncio

import pytest

from rooms.core.groups import room_group
from tests.cluster import Cluster
from tests.test_recovery import messages, said
from tests.test_shards import (
    bursts_in_one_order,
    joined,
    next_of,
    one_nickname_across,
    recovers_with_since,
)

pytestmark = pytest.mark.redis


def rooms_on_each_master(cluster: Cluster, per_master: int) -> list[str]:
    """`per_master` rooms on every master."""
    found: dict[int, list[str]] = {node.port: [] for node in cluster.nodes}
    for n in range(1000):
        owned = found[cluster.node_for(room_group(f"Room{n}")).port]
        if len(owned) < per_master:
            owned.append(f"Room{n}")
    return [room for rooms in found.values() for room in rooms]


def rooms_on_two_masters(cluster: Cluster) -> list[str]:
    """Two rooms whose slots two different masters serve."""
    first = "Room0"
    owner = cluster.node_for(room_group(first))
    other = next(
        f"Room{n}" for n in range(1, 200) if cluster.node_for(room_group(f"Room{n}")) is not owner
    )
    return [first, other]


@pytest.fixture
def two_servers(start_server, redis_cluster_url):
    env = {
        "REDIS_URL": redis_cluster_url,
        "REDIS_CLUSTER": "1",
        "REDIS_PREFIX": "cluster",
        "RATE_LIMIT": "0",
        "JOIN_RATE": "0",
    }
    return start_server("serve", **env), start_server("serve", **env)


async def test_each_room_keeps_one_order_across_processes_in_its_slot(two_servers, redis_cluster):
    rooms = rooms_on_two_masters(redis_cluster)
    clients, _ = await bursts_in_one_order(two_servers, rooms)
    for room in rooms:
        group = room_group(room)
        owner = redis_cluster.node_for(group)
        with owner.client() as client:  # its keys and its channel on the master of its slot
            assert client.exists(f"cluster:seq:{{{group}}}", f"cluster:recent:{{{group}}}") == 2
            channel = f"cluster__group__{{{group}}}".encode()
            assert channel in client.execute_command("PUBSUB SHARDCHANNELS")
        for node in redis_cluster.nodes:  # and nothing on classic pub/sub, on any master
            with node.client() as client:
                assert not [name for name in client.pubsub_channels() if group.encode() in name]
    for ws in (ws for room in rooms for ws in clients[room]):
        await ws.close()


async def test_rooms_on_every_master_at_once_keep_their_order_with_nothing_lost(
    two_servers, redis_cluster
):
    # One process's calls of one turn go to three masters: a pipeline each.
    clients, _ = await bursts_in_one_order(two_servers, rooms_on_each_master(redis_cluster, 1))
    for ws in (ws for room in clients.values() for ws in room):
        await ws.close()


async def test_a_burst_of_joins_on_every_master_all_join_and_hear_each_other(
    two_servers, redis_cluster
):
    rooms = rooms_on_each_master(redis_cluster, 2)
    members = [(room, f"m{n}") for room in rooms for n in range(8)]
    clients = await asyncio.gather(
        *(joined(two_servers[n % 2], room, nick) for n, (room, nick) in enumerate(members))
    )
    by_room = {
        room: [ws for (r, _), ws in zip(members, clients, strict=True) if r == room]
        for room in rooms
    }
    for room, room_clients in by_room.items():
        await room_clients[0].send(said(f"hello {room}"))
    for room, room_clients in by_room.items():  # every member, on either process, hears it
        for ws in room_clients:
            assert [event["text"] for event in await messages(ws, 1)] == [f"hello {room}"]
    for ws in clients:
        await ws.close()


async def test_nicknames_are_unique_and_members_listed_across_processes(two_servers, redis_cluster):
    for room in rooms_on_two_masters(redis_cluster):
        alex = await one_nickname_across(*two_servers, room)
        await alex.close()


async def test_a_reconnecting_client_recovers_with_since_on_the_other_process(
    two_servers, redis_cluster
):
    for room in rooms_on_two_masters(redis_cluster):
        await recovers_with_since(*two_servers, room)


async def test_a_restarted_master_stops_only_its_rooms_and_they_recover_by_themselves(
    two_servers, redis_cluster
):
    a, b = two_servers
    stormy, calm = rooms_on_two_masters(redis_cluster)
    master = redis_cluster.node_for(room_group(stormy))
    speakers = {room: await joined(a, room, "Speaker") for room in (calm, stormy)}
    hearers = {room: await joined(b, room, "Hearer") for room in (calm, stormy)}
    for room in (calm, stormy):
        await speakers[room].send(said("before"))
        assert [event["id"] for event in await messages(hearers[room], 1)] == [1]
        assert [event["id"] for event in await messages(speakers[room], 1)] == [1]

    redis_cluster.restart(master)  # its keys gone, its slots back on it
    for n in range(3):  # the other master's room went on
        await speakers[calm].send(said(f"after {n}"))
    assert [event["text"] for event in await messages(hearers[calm], 3)] == [
        f"after {n}" for n in range(3)
    ]
    deadline = asyncio.get_running_loop().time() + 30
    attempt = 0
    while True:  # the restarted master's room recovers with no restart of any server
        attempt += 1
        await speakers[stormy].send(said(f"again {attempt}"))
        event = await next_of(speakers[stormy], "message", "error")
        if event["type"] == "message":
            break
        assert event["code"] == "SERVICE_UNAVAILABLE"
        assert asyncio.get_running_loop().time() < deadline, "no recovery within 30 s"
        await asyncio.sleep(0.5)
    assert event["id"] > 1  # ids never go back, though the master forgot the room
    assert await messages(hearers[stormy], 1) == [event]
    for ws in (*speakers.values(), *hearers.values()):
        await ws.close()
