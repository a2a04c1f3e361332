"""What holding idle connections costs a server process, for two source trees side by side.

    .venv/bin/python -m bench.idle TREE [TREE ...] [--connections 12000] [--measure 90]

Starts `rooms.server.serve` from each tree (its own .venv, on Redis pub/sub), connects the
same number of silent users to each from one generator process per tree (rooms of 10),
waits for the joins to settle, then samples every server's CPU over the same `--measure`
seconds: nothing is sent, so what each server spends is the cost of keeping its
connections (pings, pongs, timers, periodic walks). Run it under the bench lock; the load
average is printed with the numbers.
"""

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import uvloop

from bench import database, fleet, procstat, servers
from bench.configs import APPS, REPO
from bench.swarm import Swarm

log = logging.getLogger("bench.idle")
ROOM_SIZE = 10


def _hold(
    port: int, count: int, ready: "mp.synchronize.Event", done: "mp.synchronize.Event"
) -> None:
    """Generator process: connect `count` silent users, report, hold them until `done`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fleet.tune_collector()

    async def run() -> None:
        swarm = Swarm(count // ROOM_SIZE + 1)
        rooms = [i // ROOM_SIZE for i in range(count)]
        held = await fleet.connect_fleet(swarm, port, rooms, 8, 10.0, 600.0, f"p{port}u")
        log.info("port %d: %s", port, held.summary())
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, done.wait)
        fleet.abort_all(held.clients)

    uvloop.run(run())


def _serve(tree: Path, port: int, db: int, log_dir: Path) -> subprocess.Popen:
    app = APPS["rooms"]
    env = {**os.environ, **app.env, "DJANGO_SETTINGS_MODULE": app.settings}
    env.update(CHANNEL_LAYER="redis-pubsub", REDIS_URL=servers.redis_url(db))
    env.update(REDIS_PREFIX=f"idle{port}", PYTHONUNBUFFERED="1")
    template = log_dir / f"template-{tree.name}.sqlite3"
    env["DATABASE_URL"] = asyncio.run(
        database.fresh(env, template, log_dir / f"{port}.sqlite3", 120.0)
    )
    python = str(tree / ".venv" / "bin" / "python")
    argv = [python, "-m", "rooms.server.serve", "-b", "127.0.0.1", "-p", str(port), app.asgi]
    out = (log_dir / f"server-{port}.log").open("wb")
    return subprocess.Popen(argv, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)


def _spy(pid: int, seconds: float, log_dir: Path) -> subprocess.Popen:
    """py-spy sampling `pid` for `seconds`, its collapsed stacks in log_dir/<pid>.txt."""
    out = log_dir / f"profile-{pid}.txt"
    spy = Path(sys.executable).parent / "py-spy"
    argv = [str(spy), "record", "--format", "raw", "-r", "50", "-d", str(int(seconds))]
    return subprocess.Popen([*argv, "-o", str(out), "-p", str(pid)], stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--connections", type=int, default=12_000)
    parser.add_argument("--measure", type=float, default=90.0, help="seconds sampled")
    parser.add_argument("--redis-db", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="py-spy each server meanwhile")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("picows").setLevel(logging.WARNING)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log_dir = REPO / "bench" / "logs" / time.strftime("%Y%m%dT%H%M%SZ-idle", time.gmtime())
    log_dir.mkdir(parents=True, exist_ok=True)
    servers.flush_redis(opts.redis_db)
    ctx = mp.get_context("spawn")
    done = ctx.Event()
    procs, holders = [], []
    try:
        for tree in opts.trees:
            port = servers.free_port()
            procs.append((tree, port, _serve(tree.resolve(), port, opts.redis_db, log_dir)))
        time.sleep(8)  # start-up
        for _, port, _ in procs:
            ready = ctx.Event()
            holder = ctx.Process(target=_hold, args=(port, opts.connections, ready, done))
            holder.start()
            holders.append((holder, ready))
        for _, ready in holders:
            ready.wait(900)
        time.sleep(20)  # the joins' own work done
        before = [procstat.sample(p.pid) for _, _, p in procs]
        spies = [_spy(p.pid, opts.measure, log_dir) for _, _, p in procs] if opts.profile else []
        time.sleep(opts.measure)
        for spy in spies:
            spy.wait()
        after = [procstat.sample(p.pid) for _, _, p in procs]
        load = os.getloadavg()
        print(f"idle: {opts.connections:,} silent connections per server, {opts.measure:g} s")
        for (tree, _port, _), b, a in zip(procs, before, after, strict=True):
            cpu = (a.cpu_s - b.cpu_s) / (a.wall - b.wall) * 100
            print(f"  {tree}: {cpu:.1f} % of one core, RSS {a.rss / 2**20:,.0f} MB")
        print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"  command {' '.join(sys.argv)}")
    finally:
        done.set()
        for holder, _ in holders:
            holder.join(60)
            if holder.exitcode is None:
                holder.kill()
        for _, _, proc in procs:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
