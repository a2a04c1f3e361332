"""Soak test (make soak): steady chat load on one launcher process, on loopback, for minutes.

Checks the two things only time shows: the server's memory stays flat, and nothing is
lost (every member receives every message of its room, in order). Prints one JSON summary
and exits 1 if either fails. Run by hand; results go in BENCHMARKS.md.

    .venv/bin/python scripts/soak.py --minutes 3 --rooms 10 --members 10 --rate 2
"""

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("soak")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return round(kib / 1024, 1)


def start_server(port: int, workdir: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "DEBUG": "0",
        "SECRET_KEY": "soak-only",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "LOG_LEVEL": "WARNING",
        "MAX_CONNECTIONS_PER_IP": "0",  # every member connects from 127.0.0.1
        "JOIN_RATE": "0",
    }
    for key in ("REDIS_URL", "CHANNEL_LAYER"):
        env.pop(key, None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    log = open(workdir / "server.log", "wb")
    command = [sys.executable, "-m", "rooms.serve", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        [*command, "chatproject.asgi:application"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


class Member:
    """One client: sends `rate` messages a second and records what it receives."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.sent = 0
        self.last_seen: dict[str, int] = {}
        self.out_of_order = 0

    async def send_loop(self, rate: float, until: float) -> None:
        interval = 1 / rate
        next_at = time.monotonic()
        while next_at < until:
            await self.ws.send(f"{self.sent}")
            self.sent += 1
            next_at += interval
            await asyncio.sleep(max(0, next_at - time.monotonic()))

    async def receive_loop(self) -> None:
        async for frame in self.ws:
            sender, sep, body = frame.partition(": ")
            if not sep or not body.isdigit():
                continue
            seq = int(body)
            if seq != self.last_seen.get(sender, -1) + 1:
                self.out_of_order += 1
            self.last_seen[sender] = seq


async def soak(args: argparse.Namespace, port: int, pid: int) -> dict:
    rooms: list[list[Member]] = []
    for room in range(args.rooms):
        members = []
        for n in range(args.members):
            name = f"r{room}m{n}"
            ws = await connect(f"ws://127.0.0.1:{port}/ws/chat/soak{room}/?nickname={name}")
            members.append(Member(ws, name))
        rooms.append(members)
    everyone = [member for members in rooms for member in members]
    readers = [asyncio.create_task(member.receive_loop()) for member in everyone]
    start = time.monotonic()
    until = start + args.minutes * 60
    senders = [asyncio.create_task(member.send_loop(args.rate, until)) for member in everyone]
    samples = []
    while time.monotonic() < until:
        samples.append((round(time.monotonic() - start), rss_mib(pid)))
        logger.info("t=%ss rss=%s MiB", *samples[-1])
        await asyncio.sleep(args.sample)
    await asyncio.gather(*senders)
    deadline = time.monotonic() + 30  # let the last messages arrive, bounded
    expected = {member.name: member.sent - 1 for member in everyone}
    while time.monotonic() < deadline and not all(  # noqa: ASYNC110
        member.last_seen.get(other.name, -1) == expected[other.name]
        for members in rooms
        for member in members
        for other in members
    ):
        await asyncio.sleep(0.2)
    lost = sum(
        expected[other.name] - member.last_seen.get(other.name, -1)
        for members in rooms
        for member in members
        for other in members
    )
    for member in everyone:
        await member.ws.close()
    for reader in readers:
        reader.cancel()
    sent = sum(member.sent for member in everyone)
    warm = [rss for t, rss in samples if t >= 60] or [samples[-1][1]]
    return {
        "minutes": args.minutes,
        "rooms": args.rooms,
        "members_per_room": args.members,
        "rate_per_member": args.rate,
        "messages_sent": sent,
        "deliveries_expected": sent * args.members,
        "lost": lost,
        "out_of_order": sum(member.out_of_order for member in everyone),
        "rss_mib_start": samples[0][1],
        "rss_mib_after_1_min": warm[0],
        "rss_mib_end": samples[-1][1],
        "rss_mib_max": max(rss for _, rss in samples),
        "rss_growth_after_warmup_mib": round(samples[-1][1] - warm[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2, help="messages a second per member")
    parser.add_argument("--sample", type=float, default=10, help="seconds between RSS samples")
    parser.add_argument("--max-growth", type=float, default=10, help="MiB allowed after 1 min")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        port = free_port()
        server = start_server(port, Path(tmp))
        try:
            result = asyncio.run(soak(args, port, server.pid))
        finally:
            server.terminate()
            result_code = server.wait(20)
    result["server_exit_code"] = result_code
    print(json.dumps(result, indent=2))
    ok = not result["lost"] and not result["out_of_order"] and result_code == 0
    if not ok or result["rss_growth_after_warmup_mib"] > args.max_growth:
        sys.exit(1)


if __name__ == "__main__":
    main()
