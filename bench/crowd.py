"""Crowd test: 22,000 to 100,000 WebSockets held open by `rooms.server.workers`.

Why a module of its own: the file-descriptor hard limit here is 20,000 per process, so one
load generator (`python -m bench`) tops out near 19,900 sockets, and so does one server
process. This starts the multi-process server (Redis pub/sub layer, on every core, not
pinned) with enough workers for the crowd, spreads the users over enough generator
processes (bench's own picows clients from eight loopback addresses, rooms that never span
two generators), holds everyone open, checks from the server side that the connections are
there (established TCP connections, per process, RSS, Redis memory) and that one message
sent in every room reaches every member exactly once, then drops every client at once and
times how long until every leave is announced. Prints a summary; exit status 1 if anything
failed.

    .venv/bin/python -m bench.crowd [--total 22000] [--workers N] [--procs N] [--room-size 10]
"""

import argparse
import asyncio
import logging
import math
import multiprocessing as mp
import os
import queue
import re
import resource
import secrets
import shlex
import signal
import sys
import time
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop
from picows import WSMsgType

from bench import fleet as fleets
from bench import machine, procstat, servers, wire
from bench.configs import APPS, REPO, ServerSpec
from bench.swarm import ChatClient, Swarm

log = logging.getLogger("bench.crowd")

COMMAND = "{python} -m rooms.server.workers --workers {workers} --host 127.0.0.1 --port {port}"
PER_PROCESS = 15_000  # connections a server or generator process holds at most, by default
CHECKS = ("rooms", "rooms_complete", "expected", "delivered", "duplicates", "lost", "cpu_s")


class _Unpinned(ServerSpec):
    def argv(self, port: int, cpus: str) -> list[str]:
        return super().argv(port, cpus)[3:]  # drop "taskset -c CPUS": run on every core


class _Tally(Swarm):
    """A Swarm that also counts, per user, the check messages it received."""

    def __init__(self, rooms: int) -> None:
        super().__init__(rooms)
        self.got: Counter[int] = Counter()

    def on_text(self, client: ChatClient, data: bytes) -> None:
        super().on_text(client, data)
        stamp = wire.parse_stamp(data)
        if stamp is not None and stamp[0] == self.step:
            self.got[client.index] += 1


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _deliver_check(fleet: fleets.Fleet, swarm: _Tally, wait_s: float) -> dict[str, int]:
    """Send one message in each room from a live member; count who got it exactly once."""
    rooms: dict[int, list[ChatClient]] = {}
    for client in fleet.live():
        rooms.setdefault(client.room, []).append(client)
    swarm.start_step(1)
    for seq, (sender, *_) in enumerate(rooms.values()):
        payload = wire.make_payload(1, sender.index, seq, time.monotonic_ns())
        sender.transport.send(WSMsgType.TEXT, payload)
    expected = sum(len(m) for m in rooms.values())
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if sum(swarm.got.values()) >= expected:
            await asyncio.sleep(0.5)  # let duplicates, if any, show up
            break
        await asyncio.sleep(0.05)
    return {
        "rooms": len(rooms),
        "rooms_complete": sum(all(swarm.got[c.index] == 1 for c in m) for m in rooms.values()),
        "expected": expected,
        "delivered": sum(min(swarm.got[c.index], 1) for m in rooms.values() for c in m),
        "duplicates": sum(max(n - 1, 0) for n in swarm.got.values()),
    }


async def _generate(gen: int, port: int, users: range, opts: Any, sync: tuple) -> None:
    reports, barrier, go, done = sync
    loop = asyncio.get_running_loop()
    room_of = [i // opts.room_size for i in users]  # global room numbers: no collisions
    swarm = _Tally(math.ceil(opts.total / opts.room_size))
    await loop.run_in_executor(None, barrier.wait)
    budget = opts.connect_budget or 30 + opts.total / 150
    fleet = await fleets.connect_fleet(
        swarm, port, room_of, opts.concurrency, opts.connect_timeout, budget, f"g{gen}u"
    )
    reports.put(("connected", gen, fleet.summary()))
    await loop.run_in_executor(None, go.wait)
    await asyncio.sleep(opts.hold)
    alive = len(fleet.live())
    check = await _deliver_check(fleet, swarm, 15.0)
    lost, cpu_s = swarm.lost_connections, time.process_time()
    reports.put(("held", gen, {"alive": alive, **check, "lost": lost, "cpu_s": cpu_s}))
    await loop.run_in_executor(None, done.wait)
    fleets.abort_all(fleet.clients)


def _generator(gen: int, port: int, users: range, opts: Any, sync: tuple) -> None:
    """Entry point of one generator process."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s gen{gen} %(message)s")
    logging.getLogger("picows").setLevel(logging.WARNING)
    _raise_fd_limit()
    fleets.tune_collector()
    try:
        uvloop.run(_generate(gen, port, users, opts, sync))
    except BaseException as exc:
        sync[0].put(("error", gen, repr(exc)))
        raise


async def _collect(reports: Any, phase: str, procs: list[Any], timeout: float) -> list[dict]:
    """Wait for every generator's report of `phase`, in generator order."""
    got: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(procs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"generators {set(range(len(procs))) - set(got)}: no {phase!r}")
        try:
            get = asyncio.get_running_loop().run_in_executor(None, reports.get, True, 1.0)
            kind, gen, data = await get
        except queue.Empty:
            if any(p.exitcode is not None for p in procs):
                raise RuntimeError(f"a generator exited before {phase!r}") from None
            continue
        if kind == "error":
            raise RuntimeError(f"generator {gen} failed: {data}")
        got[gen] = data
    return [got[g] for g in sorted(got)]


async def _wait_idle(pid: int, limit_s: float, idle_pct: float = 10.0) -> float:
    """Wait until pid's process tree uses under idle_pct of a core for 1 s; return seconds."""
    started = before = procstat.sample(pid)
    while before.wall - started.wall < limit_s:
        await asyncio.sleep(1.0)
        now = procstat.sample(pid)
        if procstat.cpu_percent(before, now) < idle_pct:
            break
        before = now
    return round(time.monotonic() - started.wall, 1)


def _redis_pid(db: int) -> int:
    """Pid of the Redis server, whose CPU belongs to the system under test."""
    import redis

    with redis.Redis.from_url(servers.redis_url(db), socket_timeout=5) as client:
        return int(client.info("server")["process_id"])


def _redis_memory(db: int, prefix: str) -> dict[str, int]:
    """Redis' whole used memory, and what the keys under `prefix` take (MEMORY USAGE)."""
    import redis

    with redis.Redis.from_url(servers.redis_url(db), socket_timeout=30) as client:
        used = int(client.info("memory")["used_memory"])
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.memory_usage(key)
            sizes = pipe.execute()
        channels = len(client.pubsub_channels(f"{prefix}*"))
    return {"used": used, "keys": len(keys), "keys_bytes": sum(s or 0 for s in sizes),
            "channels": channels}  # fmt: skip


async def _wait_all_left(db: int, prefix: str, limit_s: float) -> float | None:
    """Seconds until presence holds no member (each leave is announced before its member's
    name is freed), or None after `limit_s`."""
    import redis.asyncio as aioredis

    started = time.monotonic()
    client = aioredis.Redis.from_url(servers.redis_url(db), socket_timeout=10)
    try:
        while time.monotonic() - started < limit_s:
            if not await client.hlen(f"{prefix}:active"):
                return round(time.monotonic() - started, 1)
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()
    return None


def _kill_orphans(pids: list[int]) -> bool:
    """SIGKILL server workers that outlived their launcher; True if there were any."""
    killed = False
    for pid in pids:
        with suppress(OSError):
            if re.search(
                rb"rooms\.server\.(fast|serve)", Path(f"/proc/{pid}/cmdline").read_bytes()
            ):
                os.kill(pid, signal.SIGKILL)
                log.error("server worker %d outlived its launcher; killed", pid)
                killed = True
    return killed


def established(port: int) -> set[int]:
    """Socket inodes of ESTABLISHED IPv4 TCP connections whose local port is `port`."""
    suffix = f":{port:04X}"
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table][1:]
    return {int(f[9]) for f in rows if f[3] == "01" and f[1].endswith(suffix)}


def _worker_view(pid: int, conns: set[int]) -> str:
    """How many of `conns` one server process holds, and its RSS."""
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            links.add(os.readlink(fd))
    held = sum(f"socket:[{inode}]" in links for inode in conns)
    return f"pid {pid}: {held:,} connections, {procstat.sample(pid).rss / 2**20:,.1f} MB RSS"


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    """Start the server and the generators, hold the crowd, return what was measured."""
    _raise_fd_limit()  # the server inherits it
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    prefix = f"crowd-{secrets.token_hex(4)}"
    command = COMMAND.replace("{workers}", str(opts.workers))
    env = (("REDIS_PREFIX", prefix),)
    spec = _Unpinned("rooms-workers", command, "rooms", "redis-pubsub", APPS["rooms"], env)
    log_path = Path(__file__).parent / "logs" / f"{stamp}-crowd" / "server.log"
    server = await servers.start(spec, log_path, "", opts.redis_db, 60.0)
    # One worker answered the probe; a connection the kernel hands to one still starting
    # would wait in its backlog, so let them all finish starting first.
    await _wait_idle(server.pid, 60.0)
    log.info("server up on port %d; %d generators connecting", server.port, opts.procs)
    ctx = mp.get_context("spawn")
    sync = (ctx.Queue(), ctx.Barrier(opts.procs), ctx.Event(), ctx.Event())
    n_rooms = math.ceil(opts.total / opts.room_size)
    procs = []
    for g in range(opts.procs):  # whole rooms per generator
        first, end = (n_rooms * k // opts.procs * opts.room_size for k in (g, g + 1))
        users = range(first, min(end, opts.total))
        procs.append(ctx.Process(target=_generator, args=(g, server.port, users, opts, sync)))
    out: dict[str, Any] = {"port": server.port, "argv": server.argv, "log": server.log_path}
    out["redis_before"] = _redis_memory(opts.redis_db, prefix)
    try:
        worker_pids = procstat.descendants(server.pid)[1:]
        before = [procstat.sample(pid) for pid in (server.pid, _redis_pid(opts.redis_db))]
        busy = procstat.system_busy_s()
        for proc in procs:
            proc.start()
        out["conn"] = await _collect(sync[0], "connected", procs, 120 + opts.total / 50)
        sync[2].set()
        log.info("all connected; holding %g s, then the delivery check", opts.hold)
        out["held"] = await _collect(sync[0], "held", procs, opts.hold + 60)
        after = [procstat.sample(pid) for pid in (server.pid, _redis_pid(opts.redis_db))]
        out["busy_s"], out["before"], out["after"] = procstat.system_busy_s() - busy, before, after
        conns = established(server.port)
        out["established"] = len(conns)
        out["workers"] = [_worker_view(p, conns) for p in worker_pids]
        out["redis_held"] = _redis_memory(opts.redis_db, prefix)
    finally:
        sync[3].set()  # generators drop their connections and exit
        out["leaves_s"] = await _wait_all_left(opts.redis_db, prefix, 300.0)
        for proc in procs:
            await asyncio.get_running_loop().run_in_executor(None, proc.join, 30)
            if proc.exitcode is None:
                proc.kill()
        # A mass drop keeps the server busy for a while (disconnects, Daphne's cleanup of
        # their consumers); a SIGTERM would wait behind that work, so let it finish first.
        log.info("clients gone; waiting for the server to go idle before SIGTERM")
        out["settle_s"] = await _wait_idle(server.pid, 180.0)
        out["exit"] = await servers.stop(server, 30.0)
        if _kill_orphans(worker_pids):  # servers.stop SIGKILLs only the launcher's group
            out["exit"] = out["exit"] or -9
    return out


def summary(opts: argparse.Namespace, out: dict[str, Any], argv: list[str]) -> tuple[bool, str]:
    """(passed, readable summary) of one run."""
    conn, held = out["conn"], out["held"]
    ok = sum(c["conns_ok"] for c in conn)
    failed = sum(c["conns_failed"] for c in conn)
    kinds = sum((Counter(c["failure_kinds"]) for c in conn), Counter())
    secs = max(max(c["connect_s"] for c in conn), 1e-6)
    alive = sum(h["alive"] for h in held)
    chk = {k: sum(h[k] for h in held) for k in CHECKS}
    errors, _ = servers.log_errors(out["log"])
    log_text = Path(out["log"]).read_text(errors="replace")
    leaves = log_text.count(" leave room=")  # every client's leave, announced (probes too)
    killed = log_text.count("took too long to shut down")  # Daphne's close timeout
    m = machine.describe(REPO)
    (base, redis0), (end, redis1) = out["before"], out["after"]
    rss, wall, est = end.rss, end.wall - base.wall, out["established"]
    cpu = {
        "server": end.cpu_s - base.cpu_s,
        "generators": chk["cpu_s"],
        "Redis": redis1.cpu_s - redis0.cpu_s,
    }
    cpu["rest of machine"] = max(out["busy_s"] - sum(cpu.values()), 0.0)
    cpu_text = ", ".join(f"{name} {100 * v / wall:.0f} %" for name, v in cpu.items())
    passed = all(
        [
            ok == opts.total and not failed and alive == ok and est >= ok,
            chk["rooms_complete"] == chk["rooms"] and not chk["duplicates"],
            out["exit"] == 0,
            leaves >= ok and not killed and out["leaves_s"] is not None,
        ]
    )
    r0, r1 = out["redis_before"], out["redis_held"]
    redis_text = (
        f"{(r1['used'] - r0['used']) / 2**20:,.1f} MB more used_memory (the whole instance, "
        f"{(r1['used'] - r0['used']) / max(ok, 1):,.0f} B per connection); this run's "
        f"{r1['keys']:,} keys {r1['keys_bytes'] / 2**20:,.1f} MB, {r1['channels']:,} pub/sub "
        "channels"
    )
    leaves_s = out["leaves_s"]
    left_text = "not within 300 s" if leaves_s is None else f"{leaves_s} s"
    per_gen = "; ".join(
        f"{c['conns_ok']:,} in {c['connect_s']:.1f} s, handshake p50/p99 "
        f"{c['connect_p50_ms'] or 0:.0f}/{c['connect_p99_ms'] or 0:.0f} ms"
        for c in conn
    )
    return passed, "\n".join(
        [
            f"crowd: {ok:,} WebSockets on {len(out['workers'])} rooms.server.workers processes "
            f"(redis-pubsub), {opts.procs} generator processes, rooms of {opts.room_size}",
            f"  connections     {ok:,} ok, {failed:,} failed"
            + (f" {dict(kinds)}" if kinds else ""),
            f"  connect         {secs:.1f} s, {ok / secs:,.0f} conn/s ({per_gen}; "
            f"{opts.concurrency} in flight per generator)",
            f"  alive after {opts.hold:g} s  {alive:,} of {ok:,} ({chk['lost']:,} dropped)",
            f"  server side     {est:,} established TCP connections on port {out['port']}",
            f"  per process     {'; '.join(out['workers'])}",
            f"  server RSS      {rss / 2**20:,.1f} MB total (before: {base.rss / 2**20:,.1f} MB), "
            f"{(rss - base.rss) / max(ok, 1) / 1024:.1f} KB per connection",
            f"  Redis memory    {redis_text}",
            f"  CPU             {cpu_text} of one core (over {wall:.0f} s, connect to check)",
            f"  delivery check  one message in each of {chk['rooms']:,} rooms: "
            f"{chk['delivered']:,}/{chk['expected']:,} members got it, "
            f"{chk['rooms_complete']:,} rooms complete, {chk['duplicates']} duplicates",
            f"  teardown        clients dropped, server idle again after {out['settle_s']} s, "
            f"exit status {out['exit']} after SIGTERM",
            f"  leaves          every member gone from presence {left_text} after the drop; "
            f"{leaves:,} announced, {killed:,} consumers killed by the close timeout",
            f"  server log      {errors} error lines in {out['log']}",
            f"  result          {'PASS' if passed else 'FAIL'}",
            f"  command         {shlex.join(['python', '-m', 'bench.crowd', *argv])}",
            f"  server command  {shlex.join(out['argv'])}",
            f"  machine         {m['nproc']} x {m['cpu']}, kernel {m['kernel']}, "
            f"Python {m['python']}, commit {m['commit']}, file descriptors "
            f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,} per process",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the crowd test, print the summary; 0 when everything passed."""
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench.crowd", description=__doc__)
    p.add_argument("--total", "--connections", type=int, default=22_000, help="in all")
    each = f"(default: one per {PER_PROCESS:,} connections, at least 2)"
    p.add_argument("--workers", type=int, help=f"server processes {each}")
    p.add_argument("--procs", type=int, help=f"generator processes {each}")
    p.add_argument("--room-size", type=int, default=10)
    p.add_argument("--hold", type=float, default=10.0, help="seconds to hold everyone open")
    p.add_argument("--concurrency", type=int, default=32, help="connects in flight per process")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument(
        "--connect-budget",
        type=float,
        help="seconds for every generator to connect all its users (default: 30 + total/150, "
        "that is 150 connections a second; more on a machine shared with other work)",
    )
    p.add_argument("--redis-db", type=int, default=13, help="Redis db, flushed first")
    opts = p.parse_args(argv)
    enough = max(2, math.ceil(opts.total / PER_PROCESS))
    opts.workers = opts.workers or enough
    opts.procs = opts.procs or enough
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("picows").setLevel(logging.WARNING)
    try:
        passed, text = summary(opts, uvloop.run(run(opts)), argv)
    except Exception as exc:
        log.exception("crowd test aborted")
        passed, text = False, f"crowd: FAIL, aborted: {exc!r}"
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
