"""How long a burst of joins takes on Redis: CLIENTS clients joining ROOMS rooms all at once.

Starts one server process (`python -m rooms.server.workers --workers 1`: a listen backlog
that holds the burst) on the Redis of REDIS_URL (shards, or a
Redis Cluster's seed nodes with REDIS_CLUSTER=1), opens every client at the same moment,
times each from its connect to its own join notice, and closes them all before the next
round. Prints, per round, how many joined within `--timeout`, the burst's wall time and
the joins' median, p90 and slowest; and the launcher's pid, for a profiler to attach to
(`py-spy record --subprocesses --pid PID`).

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bench.join_burst
    REDIS_CLUSTER=1 REDIS_URL=<seed nodes> .venv/bin/python -m bench.join_burst --clients 600
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench import joins
from bench.joins import ROOT, free_port, wait_listening


def environment(database: Path) -> dict[str, str]:
    """bench.joins' server environment, with this run's own Redis key prefix."""
    return {
        **joins.environment(database),
        "REDIS_PREFIX": os.environ.get("REDIS_PREFIX", "bench-joins"),
    }


async def join(url: str, joined: list[float], sockets: list, timeout: float) -> None:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            ws = await connect(url, open_timeout=None)
            sockets.append(ws)
            while json.loads(await ws.recv())["type"] != "welcome":
                pass
    except (TimeoutError, OSError, InvalidHandshake, ConnectionClosed):
        return
    joined.append(time.perf_counter() - started)


async def burst(port: int, args: argparse.Namespace, round_: int) -> dict:
    joined: list[float] = []
    sockets: list = []
    urls = [
        f"ws://127.0.0.1:{port}/ws/chat/Burst{n % args.rooms}/"
        f"?format=json&history=0&nickname=r{round_}n{n}"
        for n in range(args.clients)
    ]
    started = time.perf_counter()
    await asyncio.gather(*(join(url, joined, sockets, args.timeout) for url in urls))
    wall = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    joined.sort()
    ms = [round(t * 1000) for t in joined]
    return {
        "joined": f"{len(joined)} of {args.clients}",
        "wall_s": round(wall, 2),
        "median_ms": ms[len(ms) // 2] if ms else None,
        "p90_ms": ms[int(len(ms) * 0.9)] if ms else None,
        "slowest_ms": ms[-1] if ms else None,
        "mean_ms": round(statistics.fmean(ms)) if ms else None,
    }


async def measure(port: int, args: argparse.Namespace) -> list[dict]:
    results = []
    for round_ in range(args.rounds):
        results.append(await burst(port, args, round_))
        print(json.dumps(results[-1]), flush=True)
        await asyncio.sleep(args.pause)  # the leaves announced and unsubscribed
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.join_burst", description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a join may take")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between rounds")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        parser.error("set REDIS_URL (one URL, several shards, or a cluster's seed nodes)")
    with tempfile.TemporaryDirectory(prefix="join-burst-") as tmp:
        env = environment(Path(tmp) / "db.sqlite3")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
        )
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "rooms.server.workers", "--workers", "1"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
        )
        try:
            wait_listening(port)
            print(f"launcher pid {server.pid}", flush=True)
            asyncio.run(measure(port, args))
        finally:
            server.terminate()
            server.wait(20)


if __name__ == "__main__":
    main()
