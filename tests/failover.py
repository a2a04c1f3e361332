"""A host that fails mid-conversation: three hosts (tests/hosts.py), each running
`python -m rooms.server.workers` on one Redis of their network, members of two rooms spread
over them and talking; then every process of one host dies by SIGKILL.

What each member saw is recorded for the test (tests/test_failover.py) to assert on and for
the demo (`python -m tests.failover`, `make failover-demo`) to tell. A member is a client
with the list of hosts, its own first: when its connection drops it goes to the next host
and resumes with `?since=<the last id it saw>`, and while its nickname is still held by the
dead host (until the leave is announced) it is refused with 4409 and tries again.
"""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.procstat import descendants
from rooms.core.errors import WS_4409_NICKNAME_TAKEN
from tests import processes
from tests.clients import chat_path
from tests.hosts import Host, Network
from tests.redis_server import RedisServer
from tests.servers import BASE_ENV, ROOT, migrate

ROOMS = ("Lobby", "Ops")
MEMBERS_PER_HOST = 4  # two in each room
TALK_PERIOD = 0.1  # seconds between one member's messages
RETRY = 0.2  # seconds before a refused or failed connection is tried again
START_TIMEOUT = 60.0  # a host's server ready, on a busy machine
READY_PROBES = 12


@dataclass
class Member:
    """One client: where it connects, and everything it received, with arrival times."""

    nickname: str
    room: str
    hosts: list[tuple[str, str]]  # (host name, "address:port"), its home first
    at: int = 0  # index in `hosts` of the host it uses now
    ws: ClientConnection | None = None
    ids: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # monotonic time of each message
    joins: dict[str, list[float]] = field(default_factory=dict)
    leaves: dict[str, list[float]] = field(default_factory=dict)
    gaps: list[dict] = field(default_factory=list)
    visits: list[tuple[str, float, int | None]] = field(default_factory=list)  # host, t, since
    refusals: int = 0
    sent: int = 0
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False

    @property
    def home(self) -> str:
        return self.hosts[0][0]

    @property
    def host(self) -> str:
        return self.hosts[self.at][0]

    async def attend(self) -> None:
        """Stay in the room until `leave()`: on a dropped connection move to the next host
        and resume after the last id seen; on 4409 try the same host again."""
        while not self.closing:
            name, address = self.hosts[self.at]
            since = self.ids[-1] if self.ids else 0
            query = {"format": "json", **({"since": str(since)} if self.visits else {})}
            url = f"ws://{address}{chat_path(self.room, self.nickname, **query)}"
            try:
                async with connect(url, open_timeout=5, close_timeout=2) as ws:
                    self.ws = ws
                    self.visits.append((name, time.monotonic(), since if self.visits else None))
                    async for frame in ws:
                        self._receive(orjson.loads(frame))
            except ConnectionClosed:
                pass
            except (OSError, InvalidHandshake, TimeoutError):
                self.at = (self.at + 1) % len(self.hosts)  # that host is gone
                await asyncio.sleep(RETRY)
                continue
            finally:
                self.ws = None
            if self.closing:
                return
            if ws.close_code == WS_4409_NICKNAME_TAKEN:
                self.refusals += 1  # still held by the dead host: its leave is not out yet
                self.visits.pop()
                await asyncio.sleep(RETRY)
            else:
                self.at = (self.at + 1) % len(self.hosts)

    def _receive(self, event: dict) -> None:
        now = time.monotonic()
        kind = event["type"]
        if kind == "message":
            self.ids.append(event["id"])
            self.arrivals.append(now)
        elif kind == "join":
            self.joins.setdefault(event["nickname"], []).append(now)
            if event["nickname"] == self.nickname:
                self.joined.set()
        elif kind == "leave":
            self.leaves.setdefault(event["nickname"], []).append(now)
        elif kind == "gap":
            self.gaps.append(event)

    async def talk(self, until: asyncio.Event) -> None:
        """A message every TALK_PERIOD while connected; one sent into a dying connection is
        simply not accepted."""
        while not until.is_set():
            ws = self.ws
            if ws is not None and self.joined.is_set():
                try:
                    await ws.send(
                        orjson.dumps({"type": "message", "text": f"{self.sent}"}).decode()
                    )
                    self.sent += 1
                except ConnectionClosed:
                    pass
            await asyncio.sleep(TALK_PERIOD)

    async def leave(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()

    def longest_pause(self, start: float, end: float) -> float:
        """The longest time between two messages received (or a bound) within start..end."""
        times = [start, *(t for t in self.arrivals if start < t < end), end]
        return max(b - a for a, b in zip(times, times[1:], strict=False))


@dataclass
class Outcome:
    """What happened: the members, when the victim's processes died, the times that matter."""

    ttl: float
    victim: str
    killed: list[int]
    isolated: bool
    fallback_reason: str
    members: list[Member]
    talk_start: float
    kill_at: float
    talk_end: float
    final_ids: dict[str, int]
    logs: dict[str, Path]

    def survivors(self) -> list[Member]:
        return [m for m in self.members if m.home != self.victim]

    def movers(self) -> list[Member]:
        return [m for m in self.members if m.home == self.victim]

    def leave_delays(self) -> dict[tuple[str, str], float]:
        """(survivor, mover in its room) -> seconds from the kill to the mover's leave there."""
        delays = {}
        for watcher in self.survivors():
            for mover in self.movers():
                if mover.room == watcher.room:
                    after = [t for t in watcher.leaves.get(mover.nickname, []) if t > self.kill_at]
                    delays[watcher.nickname, mover.nickname] = (
                        after[0] - self.kill_at if after else float("inf")
                    )
        return delays

    def report(self) -> str:
        """The demo's account of the run."""
        mode = (
            "network namespaces"
            if self.isolated
            else f"loopback addresses in one network stack ({self.fallback_reason})"
        )
        lines = [
            f"hosts: {mode}; PRESENCE_TTL={self.ttl:g} s, bound for leaves {self.ttl * 4 / 3:g} s",
            f"killed host {self.victim} (SIGKILL to pids {self.killed}) "
            f"{self.kill_at - self.talk_start:.1f} s into the conversation",
        ]
        delays = self.leave_delays()
        for mover in self.movers():
            seen = [d for (_, who), d in delays.items() if who == mover.nickname]
            name, t, since = next(v for v in mover.visits if v[0] != self.victim)
            lines.append(
                f"  {mover.nickname} ({mover.room}): leave seen by the others after "
                f"{min(seen):.2f}-{max(seen):.2f} s; back on host {name} after "
                f"{t - self.kill_at:.2f} s with ?since={since} ({mover.refusals} refusals "
                "with 4409 while its name was held)"
            )
        for member in self.members:
            final = self.final_ids[member.room]
            whole = member.ids == list(range(1, final + 1))
            ids = f"ids 1..{final}, no gap, no duplicate" if whole else "GAP OR DUPLICATE"
            lines.append(
                f"  {member.nickname} on {'→'.join(v[0] for v in member.visits)}: "
                f"{len(member.ids)} messages of {final} in {member.room}, "
                f"{ids}, "
                f"longest pause {member.longest_pause(self.talk_start, self.talk_end):.2f} s"
            )
        return "\n".join(lines)


def server_env(redis: RedisServer, database_url: str, network: Network, ttl: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CHANNEL_LAYER")}
    return {
        **env,
        **BASE_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url,
        "REDIS_PREFIX": "failover",
        "PRESENCE_TTL": str(ttl),
        "ALLOWED_HOSTS": ",".join(host.address for host in network.hosts),
        # Every member connects from the one address of the machine's side of the bridge.
        "RATE_LIMIT": "0",
        "JOIN_RATE": "0",
        "MAX_CONNECTIONS_PER_IP": "0",
    }


def start_server(host: Host, port: int, workers: int, env: dict, log: Path) -> subprocess.Popen:
    """`python -m rooms.server.workers` in `host`, listening on its address."""
    argv = [sys.executable, "-m", "rooms.server.workers", "--workers", str(workers)]
    argv += ["--host", host.address, "--port", str(port)]
    with open(log, "ab") as out:
        return host.popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(address: str, port: int, process: subprocess.Popen, log: Path) -> None:
    """Wait until every worker answers: the launcher's sockets listen before its workers
    serve, and the kernel picks a worker per connection, so READY_PROBES answers in a row
    (each within a second) mean all of them do."""
    deadline, answered = time.monotonic() + START_TIMEOUT, 0
    while answered < READY_PROBES:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {address} exited:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server at {address} is not ready:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://{address}:{port}/healthz", timeout=1).close()
            answered += 1
        except OSError:
            answered = 0
            time.sleep(0.1)


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and everything below it, workers first; the pids killed."""
    tree = descendants(pid)
    for member in reversed(tree):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return tree


async def converse(
    network: Network,
    redis: RedisServer,
    database_url: str,
    log_dir: Path,
    *,
    ttl: float = 3.0,
    workers: int = 2,
    victim: str = "b",
    before: float = 2.0,
    after: float = 2.0,
) -> Outcome:
    """Run the conversation, kill `victim` `before` s into it, talk on until every member is
    back and `after` s more; what everyone saw."""
    port = processes.free_port(network.address)
    env = server_env(redis, database_url, network, ttl)
    servers, logs = {}, {}
    try:
        for host in network.hosts:
            logs[host.name] = log_dir / f"host-{host.name}.log"
            servers[host.name] = start_server(host, port, workers, env, logs[host.name])
        for host in network.hosts:
            wait_ready(host.address, port, servers[host.name], logs[host.name])
        return await _conversation(network, port, servers, logs, ttl, victim, before, after)
    finally:
        for process in servers.values():
            kill_tree(process.pid)  # what the network's teardown may miss on loopback
            process.wait()


async def _conversation(network, port, servers, logs, ttl, victim, before, after) -> Outcome:
    addresses = [(host.name, f"{host.address}:{port}") for host in network.hosts]
    members = []
    for index, (name, _) in enumerate(addresses):
        others = addresses[index + 1 :] + addresses[:index]
        for n in range(MEMBERS_PER_HOST):
            # Half of a dead host's members go to each of the other hosts.
            order = [addresses[index], *(others if n < 2 else others[::-1])]
            members.append(Member(f"{name}{n}", ROOMS[n % 2], order))
    attending = [asyncio.create_task(m.attend()) for m in members]
    await asyncio.wait_for(asyncio.gather(*(m.joined.wait() for m in members)), 20)
    stop = asyncio.Event()
    talk_start = time.monotonic()
    talking = [asyncio.create_task(m.talk(stop)) for m in members]
    try:
        await asyncio.sleep(before)
        kill_at = time.monotonic()
        killed = kill_tree(servers[victim].pid)
        movers = [m for m in members if m.home == victim]
        deadline = kill_at + ttl * 4 / 3 + 10
        while not all(max(m.joins[m.nickname]) > kill_at for m in movers):
            assert time.monotonic() < deadline, [
                (m.nickname, m.host, m.visits, m.refusals, m.joins[m.nickname], kill_at)
                for m in movers
            ]
            await asyncio.sleep(0.05)
        await asyncio.sleep(after)
        stop.set()
        talk_end = time.monotonic()
        await asyncio.gather(*talking)
        final_ids = await _settle(members)
    finally:
        stop.set()
        for m in members:
            await m.leave()
        await asyncio.gather(*attending, return_exceptions=True)
    return Outcome(
        ttl, victim, killed, network.isolated, network.fallback_reason, members,
        talk_start, kill_at, talk_end, final_ids, logs,
    )  # fmt: skip


async def _settle(members: list[Member], quiet: float = 1.0, limit: float = 15.0) -> dict:
    """Wait until nothing has arrived for `quiet` s; the highest id seen in each room."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        last = max(t for m in members for t in m.arrivals)
        if time.monotonic() - last > quiet:
            break
        await asyncio.sleep(0.1)
    return {room: max(max(m.ids) for m in members if m.room == room) for room in ROOMS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.failover", description=__doc__)
    parser.add_argument("--ttl", type=float, default=3.0, help="PRESENCE_TTL, seconds")
    parser.add_argument("--workers", type=int, default=2, help="server processes per host")
    parser.add_argument("--loopback", action="store_true", help="no namespaces")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="failover-") as directory:
        root = Path(directory)
        database_url = migrate(f"sqlite:///{root / 'db.sqlite3'}")
        with Network(3, namespaces=not args.loopback) as network:
            redis = RedisServer(root / "redis", network.address)
            redis.start()
            try:
                print(f"Redis at {redis.url}; hosts " + ", ".join(
                    f"{h.name} {h.address}" + (f" ({h.namespace})" if h.namespace else "")
                    for h in network.hosts
                ))  # fmt: skip
                outcome = asyncio.run(
                    converse(network, redis, database_url, root, ttl=args.ttl, workers=args.workers)
                )
            finally:
                redis.stop()
        print(outcome.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
