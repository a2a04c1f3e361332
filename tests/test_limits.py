"""Abuse limits: rate, room and server size, client addresses, idle clients, slow
consumers, frame size.

Pure tables for rooms.core.limits, then each limit against the real launchers
(tests.servers.LAUNCHERS) over real sockets: the client at fault gets its error frame and
close code, everyone else goes on.
"""

import asyncio
import os
import re
import socket
import subprocess
import sys
import time

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from rooms.core import commands, errors, protocol
from rooms.core.errors import ClientError
from rooms.core.limits import (
    MAX_TRACKED_ADDRESSES,
    ConnectionCounter,
    JoinBudget,
    TokenBucket,
    address_key,
    default_frame_bytes,
    message_bytes_needed,
)
from tests.clients import (
    TIMEOUT,
    assert_silent,
    chat_path,
    join,
    raw_join,
    read_until_closed,
    recv,
    recv_n,
    recv_until,
)
from tests.servers import BASE_ENV, ROOT


@pytest.mark.parametrize(
    ("rate", "burst", "times", "allowed"),
    [
        (1.0, 3.0, [0, 0, 0, 0], [True, True, True, False]),
        (1.0, 3.0, [0, 0, 0, 0, 1.0], [True, True, True, False, True]),
        (2.0, 1.0, [0, 0.25, 0.5, 0.6, 1.0], [True, False, True, False, True]),
        (10.0, 2.0, [0, 0, 100, 100, 100], [True, True, True, True, False]),
        (0.0, 0.0, [0] * 5, [True] * 5),  # rate 0: no limit
    ],
)
def test_token_bucket_allows_its_burst_then_its_rate(rate, burst, times, allowed):
    bucket = TokenBucket(rate, burst)
    assert [bucket.take(now) for now in times] == allowed


def test_connection_counter_refuses_a_full_room_then_a_full_server():
    counter = ConnectionCounter()
    counter.acquire("room.a", max_total=3, max_per_group=2)
    counter.acquire("room.a", max_total=3, max_per_group=2)
    with pytest.raises(ClientError) as room_full:
        counter.acquire("room.a", max_total=3, max_per_group=2)
    assert (room_full.value.code, room_full.value.close_code) == (
        errors.ROOM_FULL,
        errors.WS_4503_UNAVAILABLE,
    )
    counter.acquire("room.b", max_total=3, max_per_group=2)
    with pytest.raises(ClientError) as server_full:
        counter.acquire("room.c", max_total=3, max_per_group=2)
    assert server_full.value.code == errors.SERVER_FULL
    assert (counter.total, counter.rooms) == (3, 2)


def test_connection_counter_frees_a_place_on_release_and_forgets_empty_rooms():
    counter = ConnectionCounter()
    counter.acquire("room.a", max_total=1, max_per_group=1)
    counter.release("room.a")
    assert (counter.total, counter.rooms) == (0, 0)
    counter.acquire("room.b", max_total=1, max_per_group=1)
    assert counter.per_group == {"room.b": 1}


def test_zero_means_no_connection_limit():
    counter = ConnectionCounter()
    for _ in range(50):
        counter.acquire("room.a", max_total=0, max_per_group=0)
    assert counter.total == 50


@pytest.mark.parametrize(
    ("client", "key"),
    [
        (None, None),  # a UNIX socket: no address, no per-address limit
        (["127.0.0.1", 50000], "127.0.0.1"),
        (["203.0.113.7", 1], "203.0.113.7"),
        (["2001:db8:1:2:3:4:5:6", 1], "2001:db8:1:2::/64"),
        (["2001:db8:1:2::9", 2], "2001:db8:1:2::/64"),  # same /64, same key
        (["2001:DB8:1:2:0:0:0:9", 2], "2001:db8:1:2::/64"),  # any spelling of it
        (["2001:db8:1:3::1", 1], "2001:db8:1:3::/64"),
        (["::1", 1], "::/64"),
        (["fe80::1%eth0", 1], "fe80::/64"),
        (["::ffff:198.51.100.4", 1], "198.51.100.4"),  # IPv4 on a dual-stack socket
        (["unknown", 0], "unknown"),  # a proxy header that is no address
        (["x" * 200, 0], "x" * 64),
    ],
    ids=lambda value: repr(value)[:30],
)
def test_address_key_groups_ipv6_by_64_and_keeps_ipv4_as_is(client, key):
    assert address_key(client) == key


@pytest.mark.parametrize(
    ("rate", "burst", "joins", "allowed"),
    [
        # (time, address) per join
        (1.0, 2.0, [(0, "a"), (0, "a"), (0, "a")], [True, True, False]),
        (1.0, 2.0, [(0, "a"), (0, "a"), (0, "b"), (0, "b")], [True] * 4),
        (1.0, 2.0, [(0, "a"), (0, "a"), (0, "a"), (1, "a"), (1, "a")], [1, 1, 0, 1, 0]),
        (1.0, 1.0, [(0, "a"), (0.5, "a"), (1.0, "a")], [True, False, True]),
        (1.0, 1.0, [(0, None), (0, None), (0, None)], [True] * 3),  # no address: no limit
        (0.0, 0.0, [(0, "a")] * 5, [True] * 5),  # rate 0: no limit
    ],
)
def test_join_budget_allows_an_address_its_burst_then_its_rate(rate, burst, joins, allowed):
    budget = JoinBudget()
    results = []
    for now, address in joins:
        try:
            budget.spend(address, now, rate, burst)
        except ClientError as error:
            assert (error.code, error.close_code) == (
                errors.JOIN_RATE_LIMITED,
                errors.WS_4429_RATE_LIMITED,
            )
            results.append(False)
        else:
            results.append(True)
    assert results == [bool(value) for value in allowed]


def test_join_budget_forgets_an_address_once_its_bucket_is_full_again():
    budget = JoinBudget()
    budget.spend("a", 0, rate=1.0, burst=3.0)
    budget.spend("b", 0.5, rate=1.0, burst=3.0)
    assert list(budget.buckets) == ["a", "b"]
    budget.spend("c", 1.2, rate=1.0, burst=3.0)  # "a" was full again at 1: forgotten
    assert list(budget.buckets) == ["b", "c"]
    budget.spend("c", 10, rate=1.0, burst=3.0)
    assert list(budget.buckets) == ["c"]


def test_connection_counter_refuses_an_address_over_its_limit_and_no_other():
    counter = ConnectionCounter()
    for _ in range(2):
        counter.acquire("room.a", 0, 0, "10.0.0.1", max_per_address=2)
    with pytest.raises(ClientError) as too_many:
        counter.acquire("room.b", 0, 0, "10.0.0.1", max_per_address=2)
    assert (too_many.value.code, too_many.value.close_code) == (
        errors.TOO_MANY_CONNECTIONS,
        errors.WS_4429_RATE_LIMITED,
    )
    assert str(too_many.value) == (
        "Too many connections from your address (at most 2); close one or try again later."
    )
    counter.acquire("room.b", 0, 0, "10.0.0.2", max_per_address=2)
    counter.acquire("room.b", 0, 0, None, max_per_address=2)  # no address: not counted
    assert (counter.total, counter.per_address) == (4, {"10.0.0.1": 2, "10.0.0.2": 1})
    counter.release("room.a", "10.0.0.1")
    counter.acquire("room.b", 0, 0, "10.0.0.1", max_per_address=2)
    for group, address in [("room.a", "10.0.0.1"), ("room.b", "10.0.0.1"), ("room.b", None)]:
        counter.release(group, address)
    counter.release("room.b", "10.0.0.2")
    assert (counter.total, counter.rooms, counter.per_address) == (0, 0, {})


def test_a_million_client_addresses_keep_the_per_address_maps_under_their_cap():
    counter, budget = ConnectionCounter(), JoinBudget()
    for n in range(1_000_000):
        address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}/{n >> 24}"
        budget.spend(address, 0.0, rate=1.0, burst=5.0)  # none refills: all kept but the cap
        counter.acquire("room.a", 0, 0, address, max_per_address=5)
        assert len(budget.buckets) <= MAX_TRACKED_ADDRESSES
        assert len(counter.per_address) <= MAX_TRACKED_ADDRESSES
    assert len(budget.buckets) == len(counter.per_address) == MAX_TRACKED_ADDRESSES
    assert counter.total == 1_000_000
    # The newest are kept; an address forgotten past the cap is released without harm.
    assert next(reversed(counter.per_address)) == address
    counter.release("room.a", "10.0.0.0/0")
    assert counter.total == 999_999


def worst_escaped(text: str) -> str:
    """A JSON message command with every character escaped, astral ones as two \\u escapes,
    and a space after each separator: the most bytes a valid message can take."""

    def escape(value: str) -> str:
        units = value.encode("utf-16-be")
        return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))

    return f'{{"{escape("type")}": "{escape("message")}", "{escape("text")}": "{escape(text)}"}}'


@pytest.mark.parametrize(
    ("max_length", "needed", "default"),
    [
        (4096, 49_408, 65_536),
        (1, 268, 512),
        (10_000, 120_256, 131_072),
        (5461, 65_788, 131_072),  # just over 64 KiB: the next power of two
        (0, 256, 256),
    ],
)
def test_default_frame_limit_is_the_longest_valid_message_rounded_up(max_length, needed, default):
    assert message_bytes_needed(max_length) == needed
    assert default_frame_bytes(max_length) == default


@pytest.mark.parametrize("max_length", [1, 10, 4096])
@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_longest_valid_message_fits_what_the_frame_limit_allows(max_length, char):
    frame = worst_escaped(char * max_length)
    assert commands.parse_message(frame, None, protocol.JSON, max_length) == char * max_length
    assert len(frame.encode()) <= message_bytes_needed(max_length)
    text_frame = "/" + "/" + char * (max_length - 1)  # the "//" escape, then the text
    assert len(text_frame.encode()) <= message_bytes_needed(max_length)


@pytest.mark.parametrize(
    ("join_env", "refused"),
    [
        ({"JOIN_BURST": "0.5"}, True),
        ({"JOIN_BURST": "0"}, True),
        ({"JOIN_BURST": "0", "JOIN_RATE": "0"}, False),  # the limit is off
        ({"JOIN_BURST": "1"}, False),
    ],
)
def test_settings_refuse_a_join_burst_that_would_refuse_every_join(join_env, refused):
    result = subprocess.run(
        [sys.executable, "-c", "import chatproject.settings"],
        cwd=ROOT,
        env={**os.environ, **BASE_ENV, **join_env},
        capture_output=True,
        text=True,
    )
    assert (result.returncode != 0) == refused, result.stderr
    message = f"Setting JOIN_BURST={join_env['JOIN_BURST']} would refuse every join"
    assert (message in result.stderr) == refused


def test_settings_refuse_a_frame_limit_below_the_longest_valid_message():
    env = {**os.environ, **BASE_ENV, "MAX_MESSAGE_LENGTH": "100", "MAX_FRAME_BYTES": "1455"}
    result = subprocess.run(
        [sys.executable, "-c", "import chatproject.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert (
        "Setting MAX_FRAME_BYTES=1455 is below the 1456 bytes a message of "
        "MAX_MESSAGE_LENGTH=100 characters may take; raise it, or leave it unset."
    ) in result.stderr
    env["MAX_FRAME_BYTES"] = "1456"
    subprocess.run([sys.executable, "-c", "import chatproject.settings"], env=env, check=True)


async def test_client_over_its_rate_is_told_and_closed_and_the_room_goes_on(start_server, launcher):
    server = start_server(launcher, RATE_LIMIT="1", RATE_BURST="3")
    other = await join(server, "Room1", "Other")
    await recv(other)
    flood = await join(server, "Room1", "Flood")
    await recv(flood), await recv(other)
    for n in range(6):
        await flood.send(f"m{n}")
    code, frames = await read_until_closed(flood)
    assert code == errors.WS_4429_RATE_LIMITED
    assert frames[-1] == "error RATE_LIMITED: Too many frames: at most 1 a second on average."
    # Its own echoes race the error; none comes after it, and nothing is sent once closing.
    assert frames[:-1] == ["Flood: m0", "Flood: m1", "Flood: m2"][: len(frames) - 1]
    assert await recv_n(other, 4) == ["Flood: m0", "Flood: m1", "Flood: m2", "Flood left the room"]
    await other.send("still here")
    assert await recv(other) == "Other: still here"
    await other.close()


async def test_a_burst_of_frames_in_one_write_is_read_as_fast_as_it_is_handled(
    start_server, launcher
):
    # 400,000 two-byte messages, 3.2 MB in one write: the client is closed for its rate
    # after a few of them, the room goes on, and the server does not hold the burst as
    # queued messages (rooms.server.websocket stops reading a client whose application has
    # INPUT_HIGH messages waiting; measured apart, 4 MB sent in 64 KiB writes grew its RSS
    # by 117 MB before, 2 MB after).
    server = start_server(launcher)
    other = await join(server, "Room1", "Other")
    await recv(other)
    flood = raw_join(server.port, chat_path("Room1", "Flood"))
    await recv(other)
    before = server.rss_kib()
    peak = before
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, server.rss_kib())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    burst = (bytes([0x81, 0x82]) + bytes(4) + b"hi") * 400_000  # masked with a zero key
    await asyncio.to_thread(_send_until_closed, flood, burst)
    lines = await recv_until(other, "Flood left the room")
    await asyncio.sleep(0.5)
    sampling = False
    await sampler
    flood.close()
    assert peak - before < 40_000, f"RSS grew by {(peak - before) // 1024} MiB"
    assert all(line == "Flood: hi" for line in lines[:-1])
    await other.send("still here")
    assert await recv(other) == "Other: still here"
    await other.close()


def _send_until_closed(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the server closed the client for its rate and reset the rest
        pass


async def test_full_room_and_full_server_refuse_with_4503_until_a_place_frees(
    start_server, launcher
):
    server = start_server(launcher, MAX_ROOM_CONNECTIONS="2", MAX_CONNECTIONS="3")
    first = await join(server, "Small", "First")
    assert await recv(first) == "First joined Small"
    second = await join(server, "Small", "Second")
    assert await recv(first) == await recv(second) == "Second joined Small"
    third = await join(server, "Small", "Third")
    assert await read_until_closed(third) == (
        errors.WS_4503_UNAVAILABLE,
        ["error ROOM_FULL: This room is full (2 members); try again later."],
    )
    elsewhere = await join(server, "Other", "Elsewhere")
    await recv(elsewhere)
    fourth = await join(server, "Another", "Fourth")
    assert await read_until_closed(fourth) == (
        errors.WS_4503_UNAVAILABLE,
        ["error SERVER_FULL: The server is at its connection limit; try again later."],
    )
    await assert_silent(first, 0.1)  # refused joiners were never announced
    await second.close()
    assert await recv(first) == "Second left the room"
    again = await join(server, "Small", "Again")
    assert await recv(again) == "Again joined Small"
    for ws in (first, again, elsewhere):
        await ws.close()


async def join_from(server, host: str, room: str, nickname: str, **query) -> ClientConnection:
    """Join from a given loopback address: all of 127.0.0.0/8 is local."""
    url = server.url(chat_path(room, nickname, **query))
    # max_queue=None: members that never read still read their close frame at once.
    return await connect(url, open_timeout=TIMEOUT, local_addr=(host, 0), max_queue=None)


async def test_an_address_at_max_connections_per_ip_is_refused_and_others_still_join(
    start_server, launcher
):
    server = start_server(launcher, MAX_CONNECTIONS_PER_IP="50", JOIN_RATE="0")
    watcher = await join_from(server, "127.0.0.2", "Room1", "Watcher")
    assert await recv(watcher) == "Watcher joined Room1"
    members = [await join_from(server, "127.0.0.1", "Room1", f"m{n}") for n in range(50)]
    assert await recv_n(watcher, 50) == [f"m{n} joined Room1" for n in range(50)]
    extra = await join_from(server, "127.0.0.1", "Room1", "Extra")
    assert await read_until_closed(extra) == (
        errors.WS_4429_RATE_LIMITED,
        [
            "error TOO_MANY_CONNECTIONS: Too many connections from your address (at most 50); "
            "close one or try again later."
        ],
    )
    await assert_silent(watcher, 0.2)  # the refused joiner was never announced
    assert re.search(
        r"close room='' nickname='' code=4429 error=TOO_MANY_CONNECTIONS client=127\.0\.0\.1:\d+",
        server.log(),
    )
    other = await join_from(server, "127.0.0.2", "Room1", "Other")
    assert await recv(watcher) == "Other joined Room1"
    await members[0].close()
    assert await recv(watcher) == "m0 left the room"
    again = await join_from(server, "127.0.0.1", "Room1", "Again")
    assert await recv(watcher) == "Again joined Room1"
    for ws in (watcher, other, again, *members[1:]):
        await ws.close()


async def test_joins_over_an_address_budget_are_refused_and_never_announced(start_server, launcher):
    server = start_server(launcher, JOIN_RATE="0.01", JOIN_BURST="4")
    watcher = await join_from(server, "127.0.0.2", "Room1", "Watcher")
    assert await recv(watcher) == "Watcher joined Room1"
    # Four joins from 127.0.0.1, two of them refused for other reasons: each costs a token,
    # and closing a connection gives none back.
    for nickname, refusal in [
        ("Nick", None),
        ("", errors.WS_4400_BAD_REQUEST),
        ("watcher", errors.WS_4409_NICKNAME_TAKEN),
        ("Nick", None),
    ]:
        ws = await join_from(server, "127.0.0.1", "Room1", nickname)
        if refusal is None:
            assert await recv(ws) == await recv(watcher) == "Nick joined Room1"
            await ws.close()
            assert await recv(watcher) == "Nick left the room"
        else:
            assert (await read_until_closed(ws))[0] == refusal
    over = await join_from(server, "127.0.0.1", "Room1", "Nick")
    assert await read_until_closed(over) == (
        errors.WS_4429_RATE_LIMITED,
        [
            "error JOIN_RATE_LIMITED: Too many joins from your address: at most 0.01 a second "
            "on average; try again in a few seconds."
        ],
    )
    over_json = await join_from(server, "127.0.0.1", "Room1", "Nick", format="json")
    code, frames = await read_until_closed(over_json)
    assert code == errors.WS_4429_RATE_LIMITED
    assert [orjson.loads(frame)["code"] for frame in frames] == [errors.JOIN_RATE_LIMITED]
    await assert_silent(watcher, 0.3)  # no join, no leave for the refused ones
    elsewhere = await join_from(server, "127.0.0.3", "Room1", "Elsewhere")
    assert await recv(watcher) == "Elsewhere joined Room1"
    await elsewhere.close()
    await watcher.close()


async def test_idle_client_is_closed_with_4408_and_an_active_one_stays(start_server, launcher):
    server = start_server(launcher, IDLE_TIMEOUT="2")
    idle = await join(server, "Room1", "Idle")
    assert await recv(idle) == "Idle joined Room1"
    active = await join(server, "Room1", "Active")
    assert await recv(idle) == await recv(active) == "Active joined Room1"
    for n in range(12):  # 3 s of activity, a frame every 0.25 s
        await active.send(f"tick{n}")
        await asyncio.sleep(0.25)
    seen = [await recv(active) for _ in range(13)]
    await active.send("last")
    assert await recv(active) == "Active: last"
    await active.close()
    assert "Idle left the room" in seen
    assert [line for line in seen if line.startswith("Active:")] == [
        f"Active: tick{n}" for n in range(12)
    ]
    code, frames = await read_until_closed(idle)
    assert code == errors.WS_4408_IDLE_TIMEOUT
    assert frames[-1] == "error IDLE_TIMEOUT: No valid message or command from you in 2 seconds."


async def test_a_client_sending_only_refused_frames_is_closed_as_idle(start_server, launcher):
    server = start_server(launcher, IDLE_TIMEOUT="2")
    noisy = await join(server, "Room1", "Noisy")
    assert await recv(noisy) == "Noisy joined Room1"
    joined = time.monotonic()
    refused = [b"\x00binary", "/nope", "x" * 4097]  # each answered with an error frame
    sent = 0
    try:
        while sent < 16:  # 4 s of refused frames, one every 0.25 s
            await noisy.send(refused[sent % 3])
            sent += 1
            await asyncio.sleep(0.25)
    except ConnectionClosed:
        pass
    code, frames = await read_until_closed(noisy)
    assert code == errors.WS_4408_IDLE_TIMEOUT
    assert sent < 16 and time.monotonic() - joined > 1.9  # closed at 2 s, while sending
    assert frames[-1] == "error IDLE_TIMEOUT: No valid message or command from you in 2 seconds."
    assert {frame.split(":")[0] for frame in frames[:-1]} <= {
        f"error {errors.BINARY_UNSUPPORTED}",
        f"error {errors.COMMAND_UNKNOWN}",
        f"error {errors.MESSAGE_TOO_LONG}",
    }


async def test_connection_churn_does_not_grow_server_memory(start_server, launcher):
    # A closed connection's objects must go with reference counting: left in reference
    # cycles, each holds ~25 KB until a full collection, which a server tuned for many
    # long-lived connections runs rarely (rooms.server.serve, GC_THRESHOLDS).
    server = start_server(launcher, JOIN_RATE="0")  # 6,000 joins from one address

    async def churn(worker: int, times: int) -> None:
        for n in range(times):
            member = await join(server, f"Churn{worker}", f"n{n}")
            assert await recv(member) == f"n{n} joined Churn{worker}"
            await member.close()

    await asyncio.gather(*(churn(worker, 200) for worker in range(10)))  # caches fill
    baseline = server.rss_kib()
    for _ in range(2):
        await asyncio.gather(*(churn(worker, 200) for worker in range(10)))
    assert server.rss_kib() - baseline < 8 * 1024  # with cycles: ~20 MB a round


async def test_client_that_stops_reading_is_dropped_and_bounds_server_memory(
    start_server, launcher
):
    server = start_server(launcher, RATE_LIMIT="0", SEND_BUFFER_LIMIT="262144")
    reader = await join(server, "Busy", "Reader")
    assert await recv(reader) == "Reader joined Busy"
    stalled = raw_join(server.port, "/ws/chat/Busy/?nickname=Stalled", rcvbuf=4096)
    assert await recv(reader) == "Stalled joined Busy"
    sender = await join(server, "Busy", "Sender")
    assert await recv(reader) == await recv(sender) == "Sender joined Busy"
    drain = asyncio.create_task(_drain(sender))
    baseline = server.rss_kib()
    text = "x" * 4000
    received: list[str] = []
    sent = 0

    async def send_and_keep_up() -> None:
        nonlocal sent
        await sender.send(f"{sent} {text}")
        sent += 1
        while len(received) < sent - 5:  # the reader stays at most 5 messages behind
            received.append(await recv(reader))

    # Keep the room busy until the stalled member is dropped (the kernel's socket buffers
    # fill first, a few MB on loopback; then the close handshake times out after 1 s),
    # then a little longer; bounded either way.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "Stalled left the room" not in received:
        await send_and_keep_up()
    for _ in range(100):
        await send_and_keep_up()
    while len([line for line in received if line.startswith("Sender:")]) < sent:
        received.append(await recv(reader))
    assert "Stalled left the room" in received
    messages = [line for line in received if line.startswith("Sender:")]
    assert messages == [f"Sender: {n} {text}" for n in range(sent)]  # nothing lost, in order
    # ~4 kB a message: a stalled member kept by the server would have cost sent * 4 kB.
    assert server.rss_kib() - baseline < 30 * 1024, (sent, baseline)
    assert _read_until_closed(stalled) < sent * 4000  # cut off, not served everything
    host, port = stalled.getsockname()[:2]
    assert f"slow consumer {host}:{port}: over 262144 unsent bytes, closing" in server.log()
    stalled.close()
    drain.cancel()
    await sender.close()
    await reader.close()


def _read_until_closed(sock: socket.socket) -> int:
    """Read what the server had queued until it drops the connection; the bytes read."""
    total = 0
    try:
        while chunk := sock.recv(65536):
            total += len(chunk)
    except ConnectionResetError:
        pass
    return total


async def _drain(ws) -> None:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass


async def test_longest_valid_message_is_delivered_and_one_byte_more_gets_1009(
    start_server, launcher
):
    server = start_server(launcher)  # MAX_FRAME_BYTES unset: 64 KiB for 4096 characters
    other = await join(server, "Room1", "Other")
    await recv(other)
    big = await join(server, "Room1", "Big", format="json", history="0")
    await recv(big), await recv(big), await recv(other)
    frame = worst_escaped("😀" * 4096)
    assert len(frame) == 49_258
    await big.send(frame)
    assert await recv(other) == "Big: " + "😀" * 4096
    await big.send("x" * (64 * 1024 + 1))
    code, _ = await read_until_closed(big)
    assert code in (1009, 1006)  # failed at once: most clients see the TCP close first
    assert await recv(other) == "Big left the room"
    await other.send("alive")
    assert await recv(other) == "Other: alive"
    await other.close()
