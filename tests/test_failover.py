"""A host dies mid-conversation (tests/failover.py): its members' leaves are announced in
time, its clients resume on another host with no gap and no duplicate, and the other hosts
never stop delivering."""

import asyncio
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.failover import Outcome, converse
from tests.hosts import HostsWarning, Network
from tests.redis_server import RedisServer

TTL = 3.0  # PRESENCE_TTL of the servers, seconds
# A leave is due within TTL x 4/3 of the kill (docs/protocol.md, Presence); on top of that,
# a heartbeat's own run time and the leave's trip to the client.
LEAVE_SLACK = 0.3
LONGEST_PAUSE = 1.0  # seconds a member of a live host may go without a message


@pytest.fixture(scope="module", params=["namespaces", "loopback"])
def outcome(request, migrated_sqlite: Path, tmp_path_factory) -> Iterator[Outcome]:
    """One conversation, one kill, for every test here (half a minute of setup and talk):
    on hosts that are namespaces where they can be made, and on loopback addresses, as where
    they cannot (the loopback run keeps that fallback working)."""
    directory = tmp_path_factory.mktemp("failover")
    database_url = f"sqlite:///{shutil.copy(migrated_sqlite, directory / 'db.sqlite3')}"
    with Network(3, namespaces=request.param == "namespaces") as network:
        # Said in the output: where namespaces cannot be made, the same test on loopback.
        print(f"hosts: {'network namespaces' if network.isolated else network.fallback_reason}")
        if request.param == "namespaces" and not network.isolated:
            reason = f"hosts are loopback addresses: {network.fallback_reason}"
            warnings.warn(HostsWarning(reason), stacklevel=1)
        redis = RedisServer(directory / "redis", network.address)
        redis.start()
        try:
            result = asyncio.run(
                converse(network, redis, database_url, directory, ttl=TTL, victim="b")
            )
        finally:
            redis.stop()
    assert not network.names(), "the hosts' network was not removed"
    print(result.report())
    print("server logs:", *result.logs.values())
    yield result


def test_the_dead_hosts_processes_are_all_gone(outcome: Outcome):
    assert len(outcome.killed) == 3  # the launcher and its two workers


def test_the_dead_hosts_members_leaves_reach_every_other_member_within_the_ttl_and_a_third(
    outcome: Outcome,
):
    delays = outcome.leave_delays()
    assert len(delays) == 8 * 2  # 4 movers, each seen by the 4 survivors of its room
    assert max(delays.values()) <= TTL * 4 / 3 + LEAVE_SLACK, delays


def test_the_dead_hosts_clients_resume_on_another_host_without_gap_or_duplicate(outcome: Outcome):
    for mover in outcome.movers():
        hosts = [visit[0] for visit in mover.visits]
        assert hosts[0] == "b" and len(hosts) == 2 and hosts[1] in ("a", "c"), hosts
        assert mover.visits[1][2] > 0  # ?since= the last id it saw on host b
        assert mover.ids == list(range(1, outcome.final_ids[mover.room] + 1)), mover.nickname
        assert mover.gaps == []
    assert {mover.visits[1][0] for mover in outcome.movers()} == {"a", "c"}


def test_a_member_comes_back_only_after_its_leave_was_announced(outcome: Outcome):
    for watcher in outcome.survivors():
        for mover in outcome.movers():
            if mover.room == watcher.room:
                during = outcome.kill_at, outcome.talk_end  # not the goodbyes at the end
                (left,) = [t for t in watcher.leaves[mover.nickname] if between(t, *during)]
                (back,) = [t for t in watcher.joins[mover.nickname] if between(t, *during)]
                assert left < back


def test_the_other_hosts_members_receive_every_message_without_pause(outcome: Outcome):
    for member in outcome.survivors():
        assert [visit[0] for visit in member.visits] == [member.home]
        assert member.ids == list(range(1, outcome.final_ids[member.room] + 1)), member.nickname
        assert member.longest_pause(outcome.talk_start, outcome.talk_end) < LONGEST_PAUSE
        assert member.gaps == []
    assert all(final > 100 for final in outcome.final_ids.values())


def between(t: float, start: float, end: float) -> bool:
    return start < t < end
