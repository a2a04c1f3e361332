"""Several Daphne processes sharing rooms through the real Redis."""

import asyncio

import pytest
import redis.asyncio

from tests.clients import join, recv, recv_n, recv_until, wait_until

pytestmark = pytest.mark.redis

LAYERS = ["redis-pubsub", "redis"]


@pytest.fixture(params=LAYERS)
def two_servers(request, start_server, redis_env):
    env = {**redis_env, "CHANNEL_LAYER": request.param}
    return start_server("daphne", **env), start_server("daphne", **env)


async def test_members_on_two_processes_see_joins_messages_and_leaves(two_servers):
    a, b = two_servers
    nick = await join(a, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    alex = await join(b, "Room1", "Alex")
    assert await recv(alex) == "Alex joined Room1"
    assert await recv(nick) == "Alex joined Room1"
    await nick.send("from a")
    assert await recv(nick) == "Nick: from a"
    assert await recv(alex) == "Nick: from a"
    await alex.send("from b")
    assert await recv(alex) == "Alex: from b"
    assert await recv(nick) == "Alex: from b"
    await alex.close()
    assert await recv(nick) == "Alex left the room"
    await nick.close()


async def test_rooms_stay_apart_across_processes(two_servers):
    a, b = two_servers
    one = await join(a, "One", "Nick")
    two = await join(b, "Two", "Alex")
    await recv(one), await recv(two)
    await one.send("only one")
    assert await recv(one) == "Nick: only one"
    with pytest.raises(TimeoutError):
        await recv(two, timeout=0.5)
    await one.close()
    await two.close()


async def test_one_order_per_room_across_processes(two_servers):
    servers = two_servers
    clients = []
    for n in range(20):
        clients.append(await join(servers[n % 2], "Order", f"u{n}"))
        await recv(clients[-1])
    await asyncio.sleep(0.3)
    for client in clients:  # drain later joins
        while True:
            try:
                await recv(client, timeout=0.3)
            except TimeoutError:
                break

    async def burst(n: int) -> None:
        for seq in range(20):
            await clients[n].send(f"m{seq}")

    await asyncio.gather(*(burst(n) for n in range(6)))
    streams = await asyncio.gather(*(recv_n(client, 120) for client in clients))
    assert sorted(streams[0]) == sorted(f"u{n}: m{seq}" for n in range(6) for seq in range(20))
    assert all(stream == streams[0] for stream in streams)
    await asyncio.gather(*(client.close() for client in clients))


async def test_a_leaving_client_leaves_no_redis_subscription_behind(start_server, redis_env):
    server = start_server("serve", **redis_env, CHANNEL_LAYER="redis-pubsub")
    client = redis.asyncio.Redis.from_url(redis_env["REDIS_URL"])
    pattern = f"{redis_env['REDIS_PREFIX']}*"

    members = [await join(server, "Subs", f"u{n}") for n in range(5)]
    # Five members and the room; and, once per process, a channel in the group announcing
    # access changes (rooms.access.directory), which stays.
    assert len(await client.pubsub_channels(pattern)) == 6 + 2
    for member in members:
        await member.close()
    left = await wait_until(lambda: client.pubsub_channels(pattern), lambda names: len(names) == 2)
    access = f"{redis_env['REDIS_PREFIX']}__group__{{rooms.access}}"  # the access directory's
    assert len(left) == 2 and access.encode() in left
    await client.aclose()


async def test_a_mass_disconnect_is_announced_through_a_bounded_redis_pool(start_server, redis_env):
    server = start_server(
        "serve",
        **redis_env,
        REDIS_POOL_SIZE="4",
        RATE_LIMIT="0",
        JOIN_RATE="0",  # 220 members, all from one address
        MAX_CONNECTIONS_PER_IP="0",
    )
    client = redis.asyncio.Redis.from_url(redis_env["REDIS_URL"])
    rooms = [f"Crowd{n}" for n in range(20)]
    listeners = [await join(server, room, "listener") for room in rooms]
    crowd = []
    for room in rooms:
        crowd += await asyncio.gather(*(join(server, room, f"u{n}") for n in range(10)))
    await asyncio.gather(*(recv_n(listener, 11) for listener in listeners))
    before = (await client.info("clients"))["connected_clients"]
    for member in crowd:
        member.transport.abort()
    leaves = await asyncio.gather(*(recv_n(listener, 10) for listener in listeners))
    assert all(sorted(got) == sorted(f"u{n} left the room" for n in range(10)) for got in leaves)
    opened = (await client.info("clients"))["connected_clients"] - before
    assert opened <= 8, f"{opened} Redis connections opened for 200 leaves"
    await asyncio.gather(*(listener.close() for listener in listeners))
    await client.aclose()


async def test_joiners_arriving_together_all_hear_their_room(start_server, redis_env):
    # Their channels and rooms are subscribed in Redis a burst at a time, in shared commands.
    server = start_server(
        "serve",
        **redis_env,
        CHANNEL_LAYER="redis-pubsub",
        RATE_LIMIT="0",
        JOIN_RATE="0",  # 100 joins at once, all from one address
        MAX_CONNECTIONS_PER_IP="0",
    )
    rooms = [f"Burst{r}" for r in range(10)]
    members = await asyncio.gather(
        *(join(server, room, f"u{n}") for room in rooms for n in range(10))
    )
    for index, room in enumerate(rooms):
        await members[index * 10].send(f"hello {room}")
    heard = await asyncio.gather(
        *(recv_until(member, f"u0: hello {rooms[i // 10]}") for i, member in enumerate(members))
    )
    assert all(sum(line.startswith("u0: hello") for line in lines) == 1 for lines in heard)
    await asyncio.gather(*(member.close() for member in members))


async def test_a_room_emptied_and_joined_at_once_still_hears_its_messages(start_server, redis_env):
    # The room's UNSUBSCRIBE (its last member left) and SUBSCRIBE (a new one joined) race.
    server = start_server("serve", **redis_env, CHANNEL_LAYER="redis-pubsub")
    for n in range(10):
        old = await join(server, "Flip", f"old{n}")
        await recv_until(old, f"old{n} joined Flip")
        closing = asyncio.ensure_future(old.close())
        new = await join(server, "Flip", f"new{n}")
        await closing
        await recv_until(new, f"new{n} joined Flip")
        await new.send("still here")
        await recv_until(new, f"new{n}: still here")
        await new.close()
