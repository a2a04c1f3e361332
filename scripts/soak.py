"""Soak test (make soak): steady chat load on the launcher, on loopback, for minutes.

Checks what only time shows: the server's memory stays flat, and nothing accepted is lost.
Members of steady rooms each send `--rate` messages a second (JSON protocol); every member
must receive every other member's messages, in order, with ids strictly increasing, and
after a clean stop the database must hold every message the server accepted, each once.
Options add churn over many rooms (`--churn`: clients that each visit a new room, say a
few messages and leave, all along) and Redis (`--redis`: a private redis-server, `--processes`
server processes sharing it, and `--restart-redis-at`: Redis restarted without persistence
mid-run). Prints one JSON summary and exits 1 on any loss, disorder, duplicate or memory
growth after the first minute above `--max-growth` MiB. Run by hand; results go in
BENCHMARKS.md.

    .venv/bin/python scripts/soak.py --minutes 3 --rooms 10 --members 10 --rate 2 --churn 4
    .venv/bin/python scripts/soak.py --minutes 3 --redis --processes 2 --restart-redis-at 60
"""

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("soak")
RETRY_AFTER = 0.5  # seconds before a refused message or join is tried again
UNAVAILABLE = 4503  # the close code of a join refused while Redis is down


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` and its children (the workers of rooms.server.workers), in MiB."""
    total, pids = 0, [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            with open(f"/proc/{current}/task/{current}/children") as children:
                pids += [int(child) for child in children.read().split()]
        except FileNotFoundError:
            continue
    return round(total / 1024, 1)


class PrivateRedis:
    """A redis-server of the soak's own, without persistence, restartable on its port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = workdir / "redis.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [shutil.which("redis-server") or "redis-server", "--port", str(self.port)]
        command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen([*command, "--logfile", str(self.log)])
        wait_listening(self.port, "redis-server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_server(port: int, workdir: Path, processes: int, redis_url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "DEBUG": "0",
        "SECRET_KEY": "soak-only",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT": "0",
        "MAX_CONNECTIONS_PER_IP": "0",  # every member connects from 127.0.0.1
        "JOIN_RATE": "0",
    }
    for key in ("REDIS_URL", "CHANNEL_LAYER", "REDIS_PREFIX"):
        env.pop(key, None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    log = open(workdir / "server.log", "wb")
    command = [sys.executable, "-m", "rooms.server.workers", "--workers", str(processes)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    wait_listening(port, "the server")
    return process


def said(text: str) -> str:
    return orjson.dumps({"type": "message", "text": text}).decode()


class Member:
    """One client: sends numbered messages, each until the server accepts it, and checks
    what it receives from the others (order, ids)."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.accepted: list[tuple[int, str]] = []  # (id, text) of its own, as delivered
        self.refused = 0
        self.last_seen: dict[str, int] = {}
        self.last_id = 0
        self.out_of_order = 0
        self._answer: asyncio.Future | None = None

    async def say(self, text: str) -> None:
        """Send `text` until it is delivered back; count refusals (Redis coming back)."""
        while True:
            self._answer = asyncio.get_running_loop().create_future()
            await self.ws.send(said(text))
            if await self._answer:
                return
            self.refused += 1
            await asyncio.sleep(RETRY_AFTER)

    async def send_loop(self, rate: float, until: float) -> None:
        interval, next_at, seq = 1 / rate, time.monotonic(), 0
        while next_at < until:
            await self.say(f"{self.name}|{seq}")
            seq += 1
            next_at += interval
            await asyncio.sleep(max(0, next_at - time.monotonic()))

    async def receive_loop(self) -> None:
        async for frame in self.ws:
            event = orjson.loads(frame)
            if event["type"] == "error" and self._answer is not None:
                self._answer.set_result(False)
            if event["type"] != "message":
                continue
            if event["id"] <= self.last_id:
                self.out_of_order += 1
            self.last_id = event["id"]
            sender, _, seq = event["text"].partition("|")
            if sender == self.name and self._answer is not None and not self._answer.done():
                self.accepted.append((event["id"], event["text"]))
                self._answer.set_result(True)
            if seq.isdigit():
                if int(seq) != self.last_seen.get(sender, -1) + 1:
                    self.out_of_order += 1
                self.last_seen[sender] = int(seq)


async def joined(port: int, room: str, name: str) -> Member:
    """A member of `room`, once its own join arrived; refused joins (Redis down) retried."""
    while True:
        ws = await connect(f"ws://127.0.0.1:{port}/ws/chat/{room}/?nickname={name}&format=json")
        try:
            while (event := orjson.loads(await ws.recv()))["type"] != "join":
                pass
            if event["nickname"] == name:
                return Member(ws, name)
        except ConnectionClosed:
            if ws.close_code != UNAVAILABLE:
                raise
        await asyncio.sleep(RETRY_AFTER)


async def churn(port: int, worker: int, until: float, messages: int, size: int) -> list:
    """Visit one new room after another: join, say `messages` of `size` characters, leave."""
    visits = []
    padding = "x" * size
    while time.monotonic() < until:
        room = f"churn{worker}-{len(visits)}"
        member = await joined(port, room, "visitor")
        reader = asyncio.create_task(member.receive_loop())
        for n in range(messages):
            await member.say(f"visitor|{n}|{padding}")
        await member.ws.close()
        await reader
        visits.append((room, member))
    return visits


async def soak(args: argparse.Namespace, port: int, pid: int, redis: PrivateRedis | None):
    rooms: list[list[Member]] = []
    for room in range(args.rooms):
        rooms.append(
            [await joined(port, f"soak{room}", f"r{room}m{n}") for n in range(args.members)]
        )
    everyone = [member for members in rooms for member in members]
    readers = [asyncio.create_task(member.receive_loop()) for member in everyone]
    start = time.monotonic()
    until = start + args.minutes * 60
    senders = [asyncio.create_task(member.send_loop(args.rate, until)) for member in everyone]
    churners = [
        asyncio.create_task(churn(port, n, until, args.churn_messages, args.churn_size))
        for n in range(args.churn)
    ]
    samples, restarted = [], False
    while time.monotonic() < until:
        elapsed = time.monotonic() - start
        if redis is not None and args.restart_redis_at and not restarted:
            if elapsed >= args.restart_redis_at:
                logger.info("Redis down for %s s; it comes back empty", args.redis_down_for)
                redis.stop()
                await asyncio.sleep(args.redis_down_for)
                redis.start()
                restarted = True
        samples.append((round(elapsed), rss_mib(pid)))
        logger.info("t=%ss rss=%s MiB", *samples[-1])
        await asyncio.sleep(min(args.sample, max(0.1, until - time.monotonic())))
    await asyncio.gather(*senders)
    visits = [visit for visits in await asyncio.gather(*churners) for visit in visits]
    deadline = time.monotonic() + 30  # let the last messages arrive, bounded
    expected = {member.name: len(member.accepted) - 1 for member in everyone}

    def missing() -> int:
        return sum(
            expected[other.name] - member.last_seen.get(other.name, -1)
            for members in rooms
            for member in members
            for other in members
        )

    while time.monotonic() < deadline and missing():  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    lost = missing()
    for member in everyone:
        await member.ws.close()
    for reader in readers:
        reader.cancel()
    accepted = {
        **{
            f"soak{n}": [m for member in members for m in member.accepted]
            for n, members in enumerate(rooms)
        },
        **{room: member.accepted for room, member in visits},
    }
    warm = [rss for t, rss in samples if t >= 60] or [samples[-1][1]]
    summary = {
        "minutes": args.minutes,
        "rooms": args.rooms,
        "members_per_room": args.members,
        "rate_per_member": args.rate,
        "processes": args.processes,
        "redis": bool(redis),
        "redis_restarted": restarted,
        "churn_rooms_visited": len(visits),
        "messages_accepted": sum(len(messages) for messages in accepted.values()),
        "messages_refused_then_resent": sum(m.refused for m in everyone)
        + sum(member.refused for _, member in visits),
        "deliveries_expected": sum(len(member.accepted) * args.members for member in everyone),
        "lost": lost,
        "out_of_order": sum(member.out_of_order for member in everyone)
        + sum(member.out_of_order for _, member in visits),
        "rss_mib_start": samples[0][1],
        "rss_mib_after_1_min": warm[0],
        "rss_mib_end": samples[-1][1],
        "rss_mib_max": max(rss for _, rss in samples),
        "rss_growth_after_warmup_mib": round(samples[-1][1] - warm[0], 1),
    }
    return summary, accepted


def storage_check(database: Path, accepted: dict[str, list[tuple[int, str]]]) -> dict:
    """Every accepted message stored once, under the id it was delivered with."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT r.name, m.seq, m.text FROM rooms_message m"
            " JOIN rooms_room r ON r.id = m.room_id"
        ).fetchall()
    stored = Counter((room, seq, text) for room, seq, text in rows)
    wanted = Counter(
        (room, seq, text) for room, messages in accepted.items() for seq, text in messages
    )
    return {
        "stored": sum(stored.values()),
        "not_stored": sum((wanted - stored).values()),
        "stored_but_not_accepted": sum((stored - wanted).values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2, help="messages a second per member")
    parser.add_argument("--churn", type=int, default=0, help="clients visiting new rooms")
    parser.add_argument("--churn-messages", type=int, default=5, help="messages per visit")
    parser.add_argument("--churn-size", type=int, default=1000, help="characters per message")
    parser.add_argument("--redis", action="store_true", help="a private Redis, shared")
    parser.add_argument("--processes", type=int, default=1, help="server processes")
    parser.add_argument("--restart-redis-at", type=float, default=0, help="seconds in; 0: never")
    parser.add_argument("--redis-down-for", type=float, default=2, help="seconds, when restarted")
    parser.add_argument("--sample", type=float, default=10, help="seconds between RSS samples")
    parser.add_argument("--max-growth", type=float, default=10, help="MiB allowed after 1 min")
    args = parser.parse_args()
    if args.processes > 1 and not args.redis:
        parser.error("--processes above 1 needs --redis")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = Path(tmp)
        redis = PrivateRedis(workdir) if args.redis else None
        if redis is not None:
            redis.start()
        port = free_port()
        server = start_server(port, workdir, args.processes, redis.url if redis else "")
        try:
            result, accepted = asyncio.run(soak(args, port, server.pid, redis))
        finally:
            server.terminate()
            result_code = server.wait(20)
            if redis is not None:
                redis.stop()
        result["server_exit_code"] = result_code
        result.update(storage_check(workdir / "db.sqlite3", accepted))
    print(json.dumps(result, indent=2))
    ok = not (result["lost"] or result["out_of_order"] or result_code)
    ok = ok and not (result["not_stored"] or result["stored_but_not_accepted"])
    if not ok or result["rss_growth_after_warmup_mib"] > args.max_growth:
        sys.exit(1)


if __name__ == "__main__":
    main()
