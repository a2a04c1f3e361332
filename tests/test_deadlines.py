"""The fast launcher's one sweep for every connection's deadlines (rooms.server.deadlines):
pings for the silent, drops for the unanswering and for handshakes too slow, cancellation
of applications that outlive their clients. Against the real launcher: tests/test_faults.py
(a dead peer), tests/test_fuzz.py (slowloris), both run on every launcher."""

import pytest

from rooms.server import deadlines


class Connection:
    """What the sweep reads and calls on a connection, recording the calls."""

    def __init__(self, state: int) -> None:
        self.state = state
        self.seen = False
        self.since = 0.0
        self.pinged = 0.0
        self.calls: list[str] = []

    def ping(self) -> None:
        self.calls.append("ping")

    def abort(self) -> None:
        self.calls.append("abort")

    def cancel(self) -> None:
        self.calls.append("cancel")


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setattr(deadlines.Settings, "ping_interval", 20.0)
    monkeypatch.setattr(deadlines.Settings, "ping_timeout", 30.0)
    monkeypatch.setattr(deadlines.Settings, "handshake_timeout", 5.0)
    monkeypatch.setattr(deadlines.Settings, "close_timeout", 60.0)
    monkeypatch.setattr(deadlines, "_connections", {})


def tracked(state: int, since: float = 0.0) -> Connection:
    connection = Connection(state)
    deadlines.track(connection)
    connection.since = since
    return connection


def test_a_silent_connection_is_pinged_once_then_dropped_if_it_stays_silent():
    silent = tracked(deadlines.OPEN)
    deadlines.sweep(19.0)
    assert silent.calls == []
    deadlines.sweep(20.0)
    assert silent.calls == ["ping"]
    deadlines.sweep(49.0)  # no second ping while the first is unanswered
    assert silent.calls == ["ping"]
    deadlines.sweep(50.0)
    assert silent.calls == ["ping", "abort"]


def test_any_frame_counts_as_an_answer_and_restarts_the_silence():
    talker = tracked(deadlines.OPEN)
    deadlines.sweep(20.0)
    talker.seen = True  # a pong, or any frame
    deadlines.sweep(25.0)
    deadlines.sweep(44.0)
    assert talker.calls == ["ping"]
    deadlines.sweep(45.0)  # silent for PING_INTERVAL since the frame: pinged again
    assert talker.calls == ["ping", "ping"]


def test_a_connection_that_keeps_talking_is_never_pinged():
    talker = tracked(deadlines.OPEN)
    for now in range(0, 200, 5):
        talker.seen = True
        deadlines.sweep(float(now))
    assert talker.calls == []


def test_a_handshake_not_answered_within_its_deadline_is_dropped():
    slow = tracked(deadlines.CONNECTING, since=100.0)
    deadlines.sweep(104.9)
    assert slow.calls == []
    deadlines.sweep(105.0)
    assert slow.calls == ["abort"]


def test_an_application_outliving_its_client_by_the_close_timeout_is_cancelled():
    gone = tracked(deadlines.CLOSED, since=10.0)
    deadlines.sweep(69.0)
    assert gone.calls == []
    deadlines.sweep(70.0)
    assert gone.calls == ["cancel"]


def test_a_forgotten_connection_is_left_alone():
    done = tracked(deadlines.OPEN)
    deadlines.forget(done)
    deadlines.forget(done)  # twice is harmless
    deadlines.sweep(1_000.0)
    assert done.calls == []


def test_the_sweep_runs_four_times_per_shortest_deadline_and_at_most_every_quarter_second():
    assert deadlines.tick() == 5.0 / 4
    deadlines.Settings.handshake_timeout = 0.1
    assert deadlines.tick() == 0.25
