"""What a join costs the server, anonymous against signed in (a token, a session cookie).

Starts the launcher (`python -m rooms.server.serve`, one process, in-memory layer, a fresh
SQLite database holding one user), then joins it `--joins` times for each kind of client,
`--concurrency` at a time, each client in a room of its own and gone once joined, and reads
the server's CPU time from /proc around each batch: CPU per join is the figure (the client's
own cost, on the same machine, does not count).

    .venv/bin/python -m bench.joins [--joins 2000] [--concurrency 16]
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from bench import procstat

ROOT = Path(__file__).resolve().parent.parent
SETUP = """
from django.contrib.auth.models import User
from django.test import Client
from rooms.access import tokens
user = User.objects.create_user("bench", password="bench password")
client = Client()
client.force_login(user)
print(tokens.issue(user, 3600), client.cookies["sessionid"].value)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 20) -> None:
    """Return once something accepts connections on `port`; RuntimeError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} within {timeout} s")


def environment(database: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatproject.settings",
        "DEBUG": "0",
        "SECRET_KEY": "bench-only",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{database}",
        "LOG_LEVEL": "WARNING",
        "JOIN_RATE": "0",
        "MAX_CONNECTIONS_PER_IP": "0",
        "MAX_CONNECTIONS_PER_USER": "0",
    }


async def join(port: int, room: str, query: str, headers: dict[str, str]) -> None:
    url = f"ws://127.0.0.1:{port}/ws/chat/{room}/?format=json&{query}"
    async with connect(url, additional_headers=headers) as ws:
        while json.loads(await ws.recv())["type"] != "join":
            pass


async def batch(port: int, kind: str, count: int, concurrency: int, query: str, headers) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            await join(port, f"{kind}{n}", query, headers)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(args: argparse.Namespace, port: int, pid: int, token: str, session: str):
    kinds = {
        "anonymous": ("nickname=guest", {}),
        "token": (f"token={token}", {}),
        "session": ("", {"Cookie": f"sessionid={session}"}),
    }
    results = {}
    for kind, (query, headers) in kinds.items():
        await batch(port, f"warm-{kind}", 100, args.concurrency, query, headers)
    for kind, (query, headers) in kinds.items():
        before = procstat.sample(pid)
        await batch(port, kind, args.joins, args.concurrency, query, headers)
        after = procstat.sample(pid)
        results[kind] = {
            "joins": args.joins,
            "joins_per_s": round(args.joins / (after.wall - before.wall)),
            "server_cpu_us_per_join": round((after.cpu_s - before.cpu_s) / args.joins * 1e6),
        }
    anonymous = results["anonymous"]["server_cpu_us_per_join"]
    for kind in ("token", "session"):
        results[kind]["cpu_vs_anonymous"] = round(
            results[kind]["server_cpu_us_per_join"] / anonymous, 2
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="joins-") as tmp:
        env = environment(Path(tmp) / "db.sqlite3")
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        setup = subprocess.run(
            [*manage, "shell", "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True
        )
        token, session = setup.stdout.decode().split()[-2:]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "rooms.server.serve", "-b", "127.0.0.1", "-p", str(port)]
            + ["chatproject.asgi:application"],
            cwd=ROOT,
            env=env,
        )
        try:
            wait_listening(port)
            results = asyncio.run(measure(args, port, server.pid, token, session))
        finally:
            server.terminate()
            server.wait(20)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
