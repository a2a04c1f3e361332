"""Presence and unique nicknames: in one process, and across processes sharing Redis."""

import asyncio
import contextlib
import time
import urllib.request

import orjson
import pytest
import redis
from channels.layers import get_channel_layer
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from rooms.core import errors
from rooms.state.backends import get_presence, get_sequence
from rooms.state.redis_presence import RedisPresence
from tests.clients import assert_silent, get_json, join, recv, recv_json, wait_until
from tests.communicators import communicator

TTL = 1.5  # PRESENCE_TTL for these servers, in seconds


def api(server, path: str) -> dict:
    with urllib.request.urlopen(server.http(path), timeout=10) as response:
        return orjson.loads(response.read())


async def assert_refused_as_taken(ws, nickname: str) -> None:
    assert await recv(ws) == (
        f"error NICKNAME_TAKEN: The nickname {nickname!r} is taken in this room; choose another."
    )
    with pytest.raises(ConnectionClosed):
        await recv(ws)
    assert ws.close_code == errors.WS_4409_NICKNAME_TAKEN


async def test_text_clients_list_members_with_who_and_escape_a_leading_slash(daphne):
    nick = await join(daphne, "Room1", "Nick")
    alex = await join(daphne, "Room1", "alex")
    assert await recv(nick) == "Nick joined Room1"
    assert await recv(nick) == "alex joined Room1"
    assert await recv(alex) == "alex joined Room1"
    await alex.send("/who")
    assert await recv(alex) == "Members of Room1 (2): alex, Nick"
    await alex.send("//who is there?")
    assert await recv(alex) == "alex: /who is there?"
    assert await recv(nick) == "alex: /who is there?"
    await alex.send("/shrug")
    assert await recv(alex) == (
        "error COMMAND_UNKNOWN: Unknown command '/shrug': the commands are /who, and for "
        "moderators /kick, /ban, /mute, /unban, /unmute and /delete; "
        "start a message with // to send one beginning with /."
    )
    await assert_silent(nick)  # neither /who nor a bad command reaches the room
    await nick.close()
    await alex.close()


async def test_json_welcome_lists_members_and_who_answers_only_the_asker(daphne):
    nick = await join(daphne, "Room1", "Nick")
    await recv(nick)
    alex = await join(daphne, "Room1", "Alex", format="json")
    welcome = await recv_json(alex)
    assert welcome["type"] == "welcome" and welcome["members"] == ["Alex", "Nick"]
    assert (await recv_json(alex))["type"] == "join"
    assert await recv(nick) == "Alex joined Room1"
    await alex.send('{"type": "who"}')
    assert await recv_json(alex) == {
        "type": "members",
        "room": "Room1",
        "members": ["Alex", "Nick"],
    }
    await assert_silent(nick)
    await nick.close()
    await alex.close()


async def test_a_taken_nickname_is_refused_with_4409_and_frees_when_its_holder_leaves(daphne):
    holder = await join(daphne, "Room1", "Nick")
    await recv(holder)
    await assert_refused_as_taken(await join(daphne, "Room1", "NICK"), "NICK")
    await assert_silent(holder)  # no join, no leave: the holder is not disturbed
    elsewhere = await join(daphne, "Room2", "nick")  # unique per room only
    assert await recv(elsewhere) == "nick joined Room2"
    await holder.close()
    again = await join(daphne, "Room1", "nICK")
    assert await recv(again) == "nICK joined Room1"
    await again.close()
    await elsewhere.close()


async def test_a_look_alike_of_a_members_nickname_is_refused_with_4409(daphne):
    holder = await join(daphne, "Room1", "Alice")
    assert await recv(holder) == "Alice joined Room1"
    for look_alike in ("\u0410lice", "Ａｌｉｃｅ", "ALICE", "Al\u0456ce"):  # Cyrillic А, і
        await assert_refused_as_taken(await join(daphne, "Room1", look_alike), look_alike)
    await assert_silent(holder)
    alicia = await join(daphne, "Room1", "Alicia")
    assert await recv(alicia) == "Alicia joined Room1"
    await holder.close()
    assert await recv(alicia) == "Alice left the room"
    cyrillic = await join(daphne, "Room1", "\u0410lice")  # free again: shown as typed
    assert await recv(cyrillic) == "\u0410lice joined Room1"
    await cyrillic.close()
    await alicia.close()


@pytest.fixture
def two_servers(start_server, redis_env):
    env = {**redis_env, "PRESENCE_TTL": str(TTL)}
    return start_server("daphne", **env), start_server("daphne", **env)


@pytest.mark.redis
async def test_members_and_nicknames_are_shared_across_processes(two_servers):
    a, b = two_servers
    nick = await join(a, "Room1", "Nick", format="json")
    assert (await recv_json(nick))["members"] == ["Nick"]
    await recv_json(nick)
    alex = await join(b, "Room1", "Alex")
    assert await recv(alex) == "Alex joined Room1"
    assert (await recv_json(nick))["nickname"] == "Alex"
    await alex.send("/who")
    assert await recv(alex) == "Members of Room1 (2): Alex, Nick"
    assert api(a, "/api/rooms/Room1/")["members"] == ["Alex", "Nick"]

    await assert_refused_as_taken(await join(b, "Room1", "nick"), "nick")
    await assert_refused_as_taken(await join(a, "Room1", "ALEX"), "ALEX")
    await assert_silent(nick)
    await assert_silent(alex)

    await nick.close()
    assert await recv(alex) == "Nick left the room"
    again = await join(b, "Room1", "nick")
    assert await recv(again) == "nick joined Room1"
    await again.close()
    await alex.close()


@pytest.mark.redis
async def test_look_alike_nicknames_collide_across_processes(two_servers):
    a, b = two_servers
    holder = await join(a, "Room1", "Zoë")
    assert await recv(holder) == "Zoë joined Room1"
    for look_alike in ("Zoe\u0308", "ZO\u0415\u0308", "Ｚｏë"):  # NFD, Cyrillic Е, fullwidth
        await assert_refused_as_taken(await join(b, "Room1", look_alike), look_alike)
    await assert_silent(holder)
    await holder.close()
    # Freed just after the leave notice: once the room is empty, under the same key.
    await wait_until(lambda: get_json(b, "/api/rooms/Room1/")[0], lambda status: status == 404)
    again = await join(b, "Room1", "Zoe\u0308")
    assert await recv(again) == "Zoe\u0308 joined Room1"
    await again.close()


@pytest.mark.redis
async def test_one_of_many_simultaneous_claims_of_a_nickname_wins(two_servers):
    a, b = two_servers
    attempts = await asyncio.gather(*(join((a, b)[n % 2], "Race", "Same") for n in range(8)))
    firsts = await asyncio.gather(*(recv(ws) for ws in attempts))
    assert firsts.count("Same joined Race") == 1
    assert (
        firsts.count(
            "error NICKNAME_TAKEN: The nickname 'Same' is taken in this room; choose another."
        )
        == len(attempts) - 1
    )
    await asyncio.gather(*(ws.close() for ws in attempts))


@pytest.mark.redis
async def test_members_of_a_killed_process_expire_and_their_leave_is_announced(two_servers):
    a, b = two_servers
    ghost = await join(a, "Room1", "Ghost")
    await recv(ghost)
    watcher = await join(b, "Room1", "Watcher", format="json")
    assert (await recv_json(watcher))["members"] == ["Ghost", "Watcher"]
    await recv_json(watcher)
    a.kill()
    started = time.monotonic()
    leave = await recv_json(watcher, timeout=TTL * 4)
    assert {key: leave[key] for key in ("type", "room", "nickname")} == {
        "type": "leave",
        "room": "Room1",
        "nickname": "Ghost",
    }
    assert time.monotonic() - started < TTL * 4 / 3 + 1.5  # the documented bound, with slack
    assert api(b, "/api/rooms/Room1/")["members"] == ["Watcher"]
    await assert_silent(watcher)  # announced once
    back = await join(b, "Room1", "ghost")
    assert await recv(back) == "ghost joined Room1"
    await back.close()
    await watcher.close()


@pytest.mark.redis
async def test_a_killed_process_members_taking_their_names_back_elsewhere_join_after_their_leave(
    start_server, redis_env
):
    env = {**redis_env, "PRESENCE_TTL": str(TTL), "JOIN_RATE": "0"}  # clients retry at will
    a, b = start_server("daphne", **env), start_server("daphne", **env)
    ghosts = [f"Ghost{n}" for n in range(12)]
    for nickname in ghosts:
        await recv(await join(a, "Room1", nickname))
    watcher = await join(b, "Room1", "Watcher", format="json")
    await recv_json(watcher), await recv_json(watcher)  # welcome, its join
    a.kill()

    async def take_back(nickname: str):
        """What a client that lost its server does: join the other one until its name is free."""
        while True:
            with contextlib.suppress(OSError, InvalidHandshake, ConnectionClosed):
                ws = await join(b, "Room1", nickname)
                if await recv(ws) == f"{nickname} joined Room1":
                    return ws
            await asyncio.sleep(0.02)

    back = await asyncio.wait_for(asyncio.gather(*map(take_back, ghosts)), TTL * 4)
    seen = [(e["type"], e["nickname"]) for e in [await recv_json(watcher) for _ in range(24)]]
    for nickname in ghosts:
        assert seen.index(("leave", nickname)) < seen.index(("join", nickname)), seen
    for ws in [*back, watcher]:
        await ws.close()


@pytest.fixture
def redis_settings(redis_env, settings):
    """In-process consumers keeping presence in the real Redis (the layer stays in-memory)."""
    settings.REDIS_URL = redis_env["REDIS_URL"]
    settings.REDIS_URLS = [redis_env["REDIS_URL"]]
    settings.REDIS_PREFIX = redis_env["REDIS_PREFIX"]
    get_presence.cache_clear()
    get_sequence.cache_clear()
    return redis_env


def forget_everything(redis_env: dict) -> None:
    """What a Redis restart without persistence does to presence: every key gone."""
    client = redis.Redis.from_url(redis_env["REDIS_URL"])
    client.delete(*client.scan_iter(f"{redis_env['REDIS_PREFIX']}:*"))


@pytest.mark.redis
async def test_after_redis_forgets_a_member_its_name_is_its_own_again_before_a_later_claim(
    redis_settings,
):
    ob = await communicator("Loss", "ob", format="json")
    await ob.receive_from(), await ob.receive_from()  # welcome, join
    forget_everything(redis_settings)
    other = RedisPresence(redis_settings["REDIS_PREFIX"], 15)
    layer = get_channel_layer()
    newcomer = await layer.new_channel()
    await other.claim("Loss", "room.Loss", "OB", newcomer)  # on another process, meanwhile
    await get_presence().beat()  # finds its record gone and Redis' epoch new
    assert await get_presence().members("room.Loss") == ["ob"]
    told = await layer.receive(newcomer)
    assert (told["type"], told["code"], told["close"]) == (
        "room.evict",
        errors.NICKNAME_TAKEN,
        errors.WS_4409_NICKNAME_TAKEN,
    )
    await ob.send_to('{"type": "who"}')
    assert orjson.loads(await ob.receive_from())["members"] == ["ob"]
    await ob.disconnect()
    await other.close()


@pytest.mark.redis
async def test_a_process_taken_for_dead_gives_up_names_taken_since_and_rejoins_the_others(
    redis_settings,
):
    ob = await communicator("Loss", "ob", format="json")
    await ob.receive_from(), await ob.receive_from()  # its welcome and join, before oa's
    oa = await communicator("Loss", "oa", format="json")
    await ob.receive_from()
    await oa.receive_from(), await oa.receive_from()
    client = redis.Redis.from_url(redis_settings["REDIS_URL"])
    prefix = redis_settings["REDIS_PREFIX"]
    # Another process found this one's heartbeat missing and removed its members ...
    client.delete(f"{prefix}:procs", f"{prefix}:members:room.Loss")
    other = RedisPresence(prefix, 15)
    await other.claim("Loss", "room.Loss", "ob", await get_channel_layer().new_channel())
    await get_presence().beat()  # ... so names taken since stay taken
    while (told := orjson.loads(await ob.receive_from()))["type"] != "error":
        pass
    assert told == {
        "type": "error",
        "code": errors.NICKNAME_TAKEN,
        "message": "The nickname 'ob' is taken in this room; choose another.",
        "close": errors.WS_4409_NICKNAME_TAKEN,
    }
    assert (await ob.receive_output())["code"] == errors.WS_4409_NICKNAME_TAKEN
    rejoined = orjson.loads(await oa.receive_from())  # its leave was announced: join again
    assert (rejoined["type"], rejoined["nickname"]) == ("join", "oa")
    assert await get_presence().members("room.Loss") == ["oa", "ob"]
    await oa.disconnect()
    await other.close()
