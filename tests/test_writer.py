"""The history writer: rows the database refuses are set aside and the rest written, a
database outage is waited out, and the backlog is bounded by refusing new messages."""

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import urllib.request

import dj_database_url
import orjson
import psycopg
import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rooms.core import metrics
from rooms.models import Message, Room
from rooms.state.backends import get_writer
from rooms.state.storage import Pending
from rooms.state.writer import Backlog, HistoryWriter
from tests.clients import assert_silent, get_json, join, recv, wait_until
from tests.communicators import communicator
from tests.servers import BASE_ENV, ROOT
from tests.test_history import stored, wait_stored

T0 = 1_750_000_000_000  # a wire timestamp (ms)
examples = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNAVAILABLE = (
    "error SERVICE_UNAVAILABLE: The chat service is unavailable: "
    "your message was not delivered; send it again shortly."
)


@pytest.fixture
def database_url(any_database_url: str) -> str:
    """The live tests here run once on SQLite and once on PostgreSQL."""
    return any_database_url


def message(n: int, text: str | None = None, room: str = "Room1", nickname: str = "Nick") -> list:
    """A message as drive_writer takes it: [room, id, ts, nickname, text]."""
    return [room, n, T0 + n, nickname, f"m{n}" if text is None else text]


def drive(url: str, *batches: list[list]) -> tuple[list[dict], str]:
    """Write `batches` with the writer in a process on the database at `url`: its reports
    and its log (tests/drive_writer.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.drive_writer"],
        cwd=ROOT,
        env={**os.environ, **BASE_ENV, "DATABASE_URL": url},
        input=orjson.dumps(batches),
        capture_output=True,
        timeout=60,
    )
    log = result.stderr.decode(errors="replace")
    assert result.returncode == 0, log
    return orjson.loads(result.stdout), log


def last_id(url: str, room: str) -> int:
    """Room.last_id, read straight from the database."""
    query = "SELECT last_id FROM rooms_room WHERE name = %s"
    config = dj_database_url.parse(url)
    if config["ENGINE"].endswith("sqlite3"):
        with sqlite3.connect(config["NAME"]) as connection:
            return connection.execute(query.replace("%s", "?"), (room,)).fetchone()[0]
    with psycopg.connect(url) as connection:
        return connection.execute(query, (room,)).fetchone()[0]


def test_a_nul_mid_batch_is_set_aside_on_postgresql_logged_and_every_other_row_stored(
    postgres_url,
):
    # PostgreSQL refuses NUL in text: the whole batch used to be retried every 200 ms,
    # forever, and every later message of every room with it.
    batch = [
        *(message(n) for n in (1, 2)),
        message(3, "a\x00b"),
        message(4),
        message(5, "\x00"),  # the batch's highest id
        *(message(n, room="Room2", nickname="Alex") for n in (1, 2)),
    ]
    [report], log = drive(postgres_url, batch)
    assert report["set_aside"] == {"invalid": 2}
    assert report["written"] == 5 and report["pending"] == 0
    assert stored(postgres_url, "Room1") == [(n, "Nick", f"m{n}") for n in (1, 2, 4)]
    assert stored(postgres_url, "Room2") == [(1, "Alex", "m1"), (2, "Alex", "m2")]
    # Ids of the rows set aside were issued: the floor ids resume from covers them.
    assert last_id(postgres_url, "Room1") == 5
    errors = [line for line in log.splitlines() if " ERROR rooms.state.writer " in line]
    assert len(errors) == 2
    assert "set aside, not retried: reason=invalid room='Room1' id=3 nickname='Nick'" in errors[0]
    assert "NUL" in errors[0]
    assert "reason=invalid room='Room1' id=5 nickname='Nick'" in errors[1]


def test_an_id_holding_another_message_is_a_logged_duplicate_and_the_rest_is_stored(
    any_database_url,
):
    # Redis lost its counters and ids were issued again: the row used to vanish silently
    # (ON CONFLICT DO NOTHING).
    url = any_database_url
    earlier = [message(3, "the first m3", nickname="Old"), message(6, "the first m6")]
    reused = [*(message(n) for n in range(1, 6)), message(6, "m6 again")]
    reports, log = drive(url, earlier, reused)
    assert reports[1]["set_aside"] == {"duplicate": 2}
    assert reports[1]["written"] - reports[0]["written"] == 4
    assert stored(url, "Room1") == [
        (1, "Nick", "m1"),
        (2, "Nick", "m2"),
        (3, "Old", "the first m3"),
        (4, "Nick", "m4"),
        (5, "Nick", "m5"),
        (6, "Nick", "the first m6"),
    ]
    assert last_id(url, "Room1") == 6
    assert "reason=duplicate room='Room1' id=3 nickname='Nick'" in log
    assert "reason=duplicate room='Room1' id=6 nickname='Nick'" in log


def test_a_message_already_stored_as_is_counts_as_stored_not_as_a_duplicate(any_database_url):
    # A retry of a batch whose commit was acknowledged late finds its own rows.
    url = any_database_url
    first = [message(n) for n in (1, 2)]
    reports, log = drive(url, first, [*first, message(3)])
    assert [report["written"] for report in reports] == [2, 5]
    assert reports[1]["set_aside"] == {}
    assert stored(url, "Room1") == [(n, "Nick", f"m{n}") for n in (1, 2, 3)]
    assert "ERROR" not in log


def test_highest_pending_is_each_rooms_highest_id_until_written(any_database_url):
    batch = [message(n) for n in (4, 7, 5)] + [message(2, room="Room2")]
    [report], _ = drive(any_database_url, batch)
    assert report["highest_pending"] == {"Room1": 7, "Room2": 2}
    assert report["highest_pending_after"] == {"Room1": 0, "Room2": 0}


SET_ASIDE_IN_PROCESS = [
    pytest.param(Pending("Room1", 3, T0, "Nick", "lone \ud800"), "invalid", id="unencodable-text"),
    pytest.param(Pending("Room1", 2**63, T0, "Nick", "x"), "invalid", id="id-beyond-bigint"),
    pytest.param(Pending("Room1", 3, 10**17, "Nick", "x"), "invalid", id="time-beyond-year-9999"),
    pytest.param(Pending("Room1", 3, T0, None, "x"), "invalid", id="no-nickname"),
    pytest.param(Pending("bad/room", 3, T0, "Nick", "x"), "invalid", id="room-name-invalid"),
]


@pytest.mark.parametrize(("bad", "reason"), SET_ASIDE_IN_PROCESS)
async def test_a_row_that_cannot_be_stored_is_set_aside_and_its_batch_written(bad, reason, caplog):
    writer = HistoryWriter(interval=60, batch=500)
    before = metrics.metrics.history_set_aside[reason]
    for pending in (
        Pending("Room1", 1, T0, "Nick", "m1"),
        Pending("Room1", 2, T0, "Nick", "m2"),
        bad,
        Pending("Room1", 4, T0, "Nick", "m4"),
    ):
        writer.record(pending)
    with caplog.at_level(logging.ERROR, "rooms.state.writer"):
        await writer.close()
    assert writer.pending == 0
    assert metrics.metrics.history_set_aside[reason] == before + 1
    assert await asyncio.to_thread(_seqs, "Room1") == [1, 2, 4]
    [record] = caplog.records
    assert (record.reason, record.room, record.message_id, record.nickname) == (
        reason,
        bad.room,
        bad.id,
        bad.nickname,
    )


def _seqs(room: str) -> list[int]:
    return list(Message.objects.filter(room__name=room).values_list("seq", flat=True))


async def test_the_writer_is_full_at_either_bound_and_not_once_written():
    by_count = HistoryWriter(interval=60, batch=500, max_pending=3)
    by_bytes = HistoryWriter(interval=60, batch=500, max_bytes=20_000)
    for n in (1, 2):
        by_count.record(Pending("Room1", n, T0, "Nick", "short"))
        by_bytes.record(Pending("Room2", n, T0, "Nick", "x" * 9_000))
    assert not by_count.full and not by_bytes.full
    by_count.record(Pending("Room1", 3, T0, "Nick", "short"))
    by_bytes.record(Pending("Room2", 3, T0, "Nick", "x" * 9_000))
    assert by_count.full and by_bytes.full
    assert by_bytes.pending_bytes > 27_000
    for writer in (by_count, by_bytes):
        await writer.close()
        assert not writer.full and writer.pending == writer.pending_bytes == 0
    assert not HistoryWriter(interval=60, batch=500).full  # 0: no bound


@override_settings(ROOMS_HISTORY_PENDING_MAX=2, ROOMS_FLUSH_INTERVAL=60)
async def test_a_message_past_the_backlog_bound_is_refused_not_published_and_can_be_resent():
    nick = await communicator("Room1", "Nick")
    alex = await communicator("Room1", "Alex")
    await nick.receive_from(), await nick.receive_from(), await alex.receive_from()
    refused = metrics.metrics.history_refused
    for text in ("m1", "m2"):
        await nick.send_to(text)
        assert await nick.receive_from() == await alex.receive_from() == f"Nick: {text}"
    await nick.send_to("m3")
    assert await nick.receive_from() == UNAVAILABLE  # and the session stays open
    assert await alex.receive_nothing()
    assert metrics.metrics.history_refused == refused + 1
    await get_writer().flush()
    await nick.send_to("m3")
    assert await nick.receive_from() == await alex.receive_from() == "Nick: m3"
    await get_writer().flush()
    assert await asyncio.to_thread(_texts, "Room1") == ["m1", "m2", "m3"]
    await nick.disconnect()
    await alex.disconnect()


def _texts(room: str) -> list[str]:
    assert Room.objects.get(name=room).last_id == 3
    return list(Message.objects.filter(room__name=room).values_list("text", flat=True))


class Outage:
    """Makes the database at `url` unavailable to the server, then available again."""

    def __init__(self, url: str) -> None:
        self.config = dj_database_url.parse(url)
        self.admin = url.rsplit("/", 1)[0] + "/postgres"

    def start(self) -> None:
        if self.config["ENGINE"].endswith("sqlite3"):
            # Moved away: the server opens an empty file in its place ("no such table").
            os.replace(self.config["NAME"], f"{self.config['NAME']}.away")
            return
        name = self.config["NAME"]
        with psycopg.connect(self.admin, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )

    def end(self) -> None:
        if self.config["ENGINE"].endswith("sqlite3"):
            os.replace(f"{self.config['NAME']}.away", self.config["NAME"])
            return
        with psycopg.connect(self.admin, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{self.config["NAME"]}" ALLOW_CONNECTIONS true')


def _metrics(server) -> set[str]:
    with urllib.request.urlopen(server.http("/metrics"), timeout=10) as response:
        return set(response.read().decode().splitlines())


async def test_an_outage_is_retried_the_backlog_bound_refuses_and_nothing_accepted_is_lost(
    start_server, database_url
):
    server = start_server("daphne", HISTORY_PENDING_MAX="3", FLUSH_INTERVAL_MS="100")
    nick = await join(server, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    alex = await join(server, "Room1", "Alex")
    assert await recv(nick) == await recv(alex) == "Alex joined Room1"
    await nick.send("before")
    assert await recv(nick) == await recv(alex) == "Nick: before"
    assert len(wait_stored(database_url, "Room1", 1)) == 1

    outage = Outage(database_url)
    outage.start()
    try:
        for text in ("m1", "m2", "m3"):  # accepted: the backlog holds them
            await nick.send(text)
            assert await recv(nick) == await recv(alex) == f"Nick: {text}"
        await wait_until(server.log, lambda log: "history: writing failed" in log)
        await nick.send("m4")
        assert await recv(nick) == UNAVAILABLE  # refused before it reached the room
        await assert_silent(alex)
        status, body = await asyncio.to_thread(get_json, server, "/readyz")
        assert status == 503
        assert body["checks"]["history"] == "unavailable"
        assert {"rooms_history_pending 3", "rooms_history_refused_total 1"} <= _metrics(server)
        await asyncio.sleep(0.5)  # several retries, all failing
    finally:
        outage.end()

    texts = ["before", "m1", "m2", "m3"]
    rows = await asyncio.to_thread(wait_stored, database_url, "Room1", 4)
    assert rows == [(n, "Nick", text) for n, text in enumerate(texts, 1)]
    recovered = await wait_until(server.log, lambda log: "history: writing again after" in log)
    assert "history: writing again after" in recovered  # logged just after the commit
    status, body = await wait_until(
        lambda: asyncio.to_thread(get_json, server, "/readyz"), lambda answer: answer[0] == 200
    )
    assert body["checks"]["history"] == "ok"
    await nick.send("m4")  # sent again, as the error asked
    assert await recv(nick) == await recv(alex) == "Nick: m4"
    rows = await asyncio.to_thread(wait_stored, database_url, "Room1", 5)
    assert [text for _, _, text in rows] == [*texts, "m4"]
    assert last_id(database_url, "Room1") == 5
    assert {"rooms_history_pending 0", "rooms_history_written_total 5"} <= _metrics(server)
    await nick.close()
    await alex.close()


BACKLOG_CASES = [
    pytest.param([("a", 1), ("a", 2), ("a", 3)], [3, 3, 3, 0], id="increasing"),
    pytest.param([("a", 5), ("a", 4), ("a", 3)], [5, 4, 3, 0], id="decreasing"),
    pytest.param([("a", 5), ("a", 2), ("a", 5), ("a", 1)], [5, 5, 5, 1, 0], id="repeated-id"),
    pytest.param([("b", 9), ("a", 3), ("b", 1), ("a", 1)], [3, 3, 1, 1, 0], id="two-rooms"),
]


@pytest.mark.parametrize(("appended", "highest_of_a"), BACKLOG_CASES)
def test_backlog_highest_follows_the_oldest_being_removed(appended, highest_of_a):
    backlog = Backlog()
    for room, n in appended:
        backlog.append(Pending(room, n, T0, "Nick", "x"))
    seen = [backlog.highest("a")]
    for _ in appended:
        backlog.remove_oldest(1)
        seen.append(backlog.highest("a"))
    assert seen == highest_of_a
    assert len(backlog) == backlog.text_bytes == 0


@examples
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.sampled_from("abc"), st.integers(1, 20)),
            st.tuples(st.just("remove"), st.integers(0, 5)),
        ),
        max_size=60,
    )
)
def test_backlog_highest_matches_a_scan_of_what_is_pending(operations):
    backlog, model = Backlog(), []
    for operation in operations:
        if operation[0] == "append":
            pending = Pending(operation[1], operation[2], T0, "Nick", "x" * operation[2])
            backlog.append(pending)
            model.append(pending)
        else:
            count = min(operation[1], len(model))
            assert backlog.oldest(count) == model[:count]
            backlog.remove_oldest(count)
            del model[:count]
        for room in "abc":
            assert backlog.highest(room) == max((p.id for p in model if p.room == room), default=0)
        assert len(backlog) == len(model)
        assert backlog.text_bytes == sum(sys.getsizeof(p.text) for p in model)


async def test_closing_stops_the_writer_even_as_it_wakes_to_write():
    # A batch due (record() set the event) and close() at once: a cancellation landing as
    # the task woke was lost in asyncio.wait_for, the task ran on, and every shutdown after
    # such a moment spent all of SHUTDOWN_TIMEOUT waiting for it.
    for n in range(20):
        writer = HistoryWriter(60, 1)
        writer.record(Pending("Room1", n + 1, 1_700_000_000_000, "Nick", "hi"))
        await asyncio.sleep(0)  # the task starts and finds the batch due
        await asyncio.wait_for(writer.close(), 5)
        assert writer.pending == 0
    assert await asyncio.to_thread(lambda: Message.objects.count()) == 20
