"""A real Daphne (and runserver) process, real sockets, a real WebSocket client."""

import asyncio
import random

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from rooms.core import errors
from tests.clients import assert_silent, join, recv, recv_json, recv_n
from tests.test_history import wait_stored


async def test_seed_how_to_test_flow(daphne):
    nick = await join(daphne, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    alex = await join(daphne, "Room1", "Alex")
    assert await recv(alex) == "Alex joined Room1"
    assert await recv(nick) == "Alex joined Room1"

    await nick.send("Hello from tab one")
    assert await recv(nick) == "Nick: Hello from tab one"
    assert await recv(alex) == "Nick: Hello from tab one"
    await alex.send("Hi Nick")
    assert await recv(alex) == "Alex: Hi Nick"
    assert await recv(nick) == "Alex: Hi Nick"

    await alex.close()
    assert await recv(nick) == "Alex left the room"
    await nick.close()


async def test_dropped_connection_announces_leave(daphne):
    nick = await join(daphne, "Room1", "Nick")
    alex = await join(daphne, "Room1", "Alex")
    await recv_n(nick, 2)
    alex.transport.abort()  # no close frame: the TCP connection just goes away
    assert await recv(nick) == "Alex left the room"
    await nick.close()


async def test_the_first_member_of_a_new_room_sees_the_next_one_join(start_server):
    # The first join of a room waits for the room's stored floor; the next joiner must
    # not overtake it.
    daphne = start_server("daphne", JOIN_RATE="0")  # 60 joins from one address
    for n in range(30):
        first = await join(daphne, f"New{n}", "Nick")
        second = await join(daphne, f"New{n}", "Alex")
        assert await recv_n(first, 2) == [f"Nick joined New{n}", f"Alex joined New{n}"]
        await first.close()
        await second.close()


async def test_rooms_are_isolated_and_names_may_be_unicode(daphne):
    kitchen = await join(daphne, "Кухня 🍳", "Élodie")
    assert await recv(kitchen) == "Élodie joined Кухня 🍳"
    hall = await join(daphne, "Room1", "Nick")
    await recv(hall)
    await kitchen.send("bonjour")
    assert await recv(kitchen) == "Élodie: bonjour"
    await assert_silent(hall)
    await kitchen.close()
    await hall.close()


async def _connect_one_by_one(server, room: str, count: int) -> list:
    """Each joins once the previous one is in: the room's join order is the index order."""
    clients = []
    for n in range(count):
        clients.append(await join(server, room, f"user{n}"))
        assert await recv(clients[-1]) == f"user{n} joined {room}"
    return clients


async def test_two_hundred_clients_receive_all_messages_in_one_order(start_server):
    daphne = start_server("daphne", JOIN_RATE="0", MAX_CONNECTIONS_PER_IP="0")  # one address
    clients = await _connect_one_by_one(daphne, "Crowd", 200)
    for n, client in enumerate(clients):
        later = [f"user{i} joined Crowd" for i in range(n + 1, 200)]
        assert await recv_n(client, 199 - n) == later

    senders = random.Random(7).sample(range(200), 10)

    async def send_burst(sender: int) -> None:
        for seq in range(10):
            await clients[sender].send(f"m{seq}")
            await asyncio.sleep(0)

    await asyncio.gather(*(send_burst(s) for s in senders))
    streams = await asyncio.gather(*(recv_n(client, 100) for client in clients))
    first = streams[0]
    assert sorted(first) == sorted(f"user{s}: m{seq}" for s in senders for seq in range(10))
    assert all(stream == first for stream in streams)
    for sender in senders:
        mine = [line for line in first if line.startswith(f"user{sender}: ")]
        assert mine == [f"user{sender}: m{seq}" for seq in range(10)]
    await asyncio.gather(*(client.close() for client in clients))


@pytest.mark.parametrize(
    ("room", "nickname", "code"),
    [
        ("Room1", None, errors.NICKNAME_REQUIRED),
        ("Room1", "x" * 40, errors.NICKNAME_INVALID),
        ("r" * 101, "Nick", errors.ROOM_INVALID),
        ("a/b", "Nick", errors.ROOM_INVALID),
    ],
)
async def test_bad_handshake_is_answered_and_the_room_goes_on(daphne, room, nickname, code):
    member = await join(daphne, "Room1", "Member")
    await recv(member)
    bad = await join(daphne, room, nickname)
    assert (await recv(bad)).startswith(f"error {code}: ")
    with pytest.raises(ConnectionClosed):
        await recv(bad)
    assert bad.close_code == errors.WS_4400_BAD_REQUEST
    await member.send("still fine")
    assert await recv(member) == "Member: still fine"
    await member.close()


async def test_bad_frames_are_answered_and_nothing_else_is_harmed(daphne):
    other = await join(daphne, "Room1", "Other")
    await recv(other)
    nick = await join(daphne, "Room1", "Nick", format="json")
    await recv_n(nick, 2)
    await recv(other)
    for frame, code in [
        (b"\x00\xffbinary", errors.BINARY_UNSUPPORTED),
        ("{not json", errors.JSON_INVALID),
        ('{"type": "message", "text": "' + "x" * 5000 + '"}', errors.MESSAGE_TOO_LONG),
    ]:
        await nick.send(frame)
        assert (await recv_json(nick))["code"] == code
    await assert_silent(other)
    await nick.send(orjson.dumps({"type": "message", "text": "ok"}).decode())
    assert (await recv_json(nick))["text"] == "ok"
    assert await recv(other) == "Nick: ok"
    await nick.close()
    await other.close()


async def test_a_control_character_is_refused_and_the_next_message_is_delivered_and_stored(
    start_server, any_database_url
):
    # PostgreSQL cannot store NUL in a text column: before TEXT_INVALID such a message
    # reached the room, and then failed its batch's write.
    server = start_server("daphne", DATABASE_URL=any_database_url, FLUSH_INTERVAL_MS="50")
    other = await join(server, "Room1", "Other")
    await recv(other)
    nick = await join(server, "Room1", "Nick", format="json")
    await recv_n(nick, 2)
    await recv(other)
    explanation = (
        "Messages cannot contain control characters other than tab and newline (found U+0000)."
    )
    await nick.send(orjson.dumps({"type": "message", "text": "bad\u0000char"}).decode())
    assert await recv_json(nick) == {
        "type": "error",
        "code": errors.TEXT_INVALID,
        "message": explanation,
        "close": None,
    }
    await other.send("text\x00too")
    assert await recv(other) == f"error TEXT_INVALID: {explanation}"
    await assert_silent(other)
    await assert_silent(nick)
    await nick.send(orjson.dumps({"type": "message", "text": "good\tafter\nall"}).decode())
    assert (await recv_json(nick))["text"] == "good\tafter\nall"
    assert await recv(other) == "Nick: good\tafter\nall"
    await other.send("and in text")
    assert (await recv_json(nick))["text"] == "and in text"
    assert await recv(other) == "Other: and in text"
    rows = await asyncio.to_thread(wait_stored, any_database_url, "Room1", 2)
    assert rows == [(1, "Nick", "good\tafter\nall"), (2, "Other", "and in text")]
    await nick.close()
    await other.close()


async def test_frame_over_the_server_limit_closes_only_that_client(daphne):
    other = await join(daphne, "Room1", "Other")
    await recv(other)
    big = await join(daphne, "Room1", "Big")
    await recv(big), await recv(other)
    await big.send("x" * (1024 * 1024 + 1))
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(big)
    # Daphne fails the connection with 1009 and drops TCP at once, while the client is
    # still writing; most clients then report 1006.
    assert big.close_code in (1009, 1006)
    assert await recv(other) == "Big left the room"
    await other.send("alive")
    assert await recv(other) == "Other: alive"
    await other.close()


async def test_runserver_serves_the_same_chat(start_server):
    server = start_server("runserver")
    nick = await join(server, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    await nick.send("over runserver")
    assert await recv(nick) == "Nick: over runserver"
    await nick.close()
