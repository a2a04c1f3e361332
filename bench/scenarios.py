"""Benchmark cases S1-S5: what each one connects, drives and measures against a running server."""

import asyncio
import functools
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench import fleet as fleets
from bench import ladder, procstat
from bench.fleet import Fleet
from bench.servers import RunningServer, ServerSlot
from bench.swarm import Swarm
from bench.traffic import StepRules, run_step

log = logging.getLogger(__name__)

Result = dict[str, object]


@dataclass(frozen=True)
class Context:
    """A case's server plus the connection settings every case shares."""

    slot: ServerSlot
    concurrency: int
    connect_timeout: float
    quiet_pct: float

    @property
    def server(self) -> RunningServer:
        """The server process running now."""
        return self.slot.server

    def connect_budget(self, users: int) -> float:
        """Seconds allowed for opening `users` connections (at least ~130 conn/s)."""
        return 30.0 + users / 150

    @property
    def dialect(self) -> str:
        """Wire dialect of the server under test."""
        return self.server.spec.dialect


@dataclass(frozen=True)
class Case:
    """One row of results per server: a scenario at one size."""

    scenario: str
    title: str
    kind: str
    timeout_s: float
    run: Callable[[Context], Awaitable[Result]]


def _mb(value: int) -> float:
    return round(value / 2**20, 1)


async def _settle_joins(fleet: Fleet, dialect: str, limit_s: float) -> Result:
    """Wait for the rooms dialect's join notices: a room of m users owes m(m+1)/2 of them."""
    started = time.monotonic()
    if dialect != "rooms":
        return {"join_notices": None, "join_expected": None, "join_settle_s": 0.0}
    sizes = Counter(c.room for c in fleet.clients)
    expected = sum(m * (m + 1) // 2 for m in sizes.values())
    swarm = fleet.swarm
    while time.monotonic() - started < limit_s and swarm.joins < expected:
        if time.monotonic_ns() - swarm.last_frame_ns > 2e9:
            break
        await asyncio.sleep(0.05)
    return {
        "join_notices": swarm.joins,
        "join_expected": expected,
        "join_settle_s": round(time.monotonic() - started, 2),
    }


async def _connect(
    ctx: Context, swarm: Swarm, room_of: list[int], settle_s: float
) -> tuple[Fleet, Result]:
    """Connect users, wait for join notices, and report connection and memory figures."""
    pid = ctx.server.pid
    base = procstat.sample(pid)
    window = procstat.Window.open(pid)
    fleet = await fleets.connect_fleet(
        swarm,
        ctx.server.port,
        room_of,
        ctx.concurrency,
        ctx.connect_timeout,
        ctx.connect_budget(len(room_of)),
    )
    joins = await _settle_joins(fleet, ctx.dialect, settle_s)
    usage = window.close(pid)
    after = procstat.sample(pid)
    ok = len(fleet.clients)
    result: Result = {
        **fleet.summary(),
        **joins,
        "join_s": round(fleet.connect_s + float(joins["join_settle_s"]), 2),
        "lost_after_connect": swarm.lost_connections,
        "rss_base_mb": _mb(base.rss),
        "rss_mb": _mb(after.rss),
        "rss_per_conn_kb": round((after.rss - base.rss) / ok / 1024, 1) if ok else None,
        "connect_cpu_pct": usage["server_cpu_pct"],
        "connect_gen_cpu_pct": usage["gen_cpu_pct"],
        "connect_others_cpu_pct": usage["others_cpu_pct"],
        "noisy": usage["others_cpu_pct"] >= ctx.quiet_pct,
    }
    return fleet, result


def _broken(ctx: Context, fleet: Fleet) -> bool:
    """True once users were dropped or the server exited: the next step needs new ones."""
    return bool(fleet.swarm.lost_connections) or ctx.server.proc.returncode is not None


async def _ladder(
    ctx: Context,
    rooms: int,
    per_room: int,
    plan: ladder.LadderPlan,
    rules: StepRules,
    settle_s: float,
) -> Result:
    room_of = [i % rooms for i in range(rooms * per_room)]
    fleet, result = await _connect(ctx, Swarm(rooms), room_of, settle_s)
    restarts = 0
    try:
        counter = itertools.count(1)

        async def step(rate: float) -> Result:
            """One step, repeated once if another process competed for the CPUs.

            A step never runs on a fleet that lost users or on a server that exited: after a
            mass disconnect (which the seed does not survive) both start afresh."""
            nonlocal fleet, restarts
            fresh = _broken(ctx, fleet)
            if fresh:
                log.info("  users lost: fresh server, every user connected again")
                fleets.abort_all(fleet.clients)
                await ctx.slot.restart()
                fleet, _ = await _connect(ctx, Swarm(rooms), room_of, settle_s)
                restarts += 1
            swarm = fleet.swarm
            for _attempt in range(2):
                await procstat.wait_for_quiet(ctx.quiet_pct, 10.0, 0.25)
                await fleets.wait_quiet(swarm, 0.3, 10.0)
                result = await run_step(
                    fleet, ctx.dialect, rate, next(counter), ctx.server.pid, rules
                )
                result["noisy"] = float(result["others_cpu_pct"]) >= ctx.quiet_pct
                if not result["noisy"]:
                    break
                log.warning("  other processes used %s%% CPU", result["others_cpu_pct"])
            result["fresh_server"] = fresh
            log.info(
                "  %7.1f msg/s: %s, %.0f dlv/s, CPU %% server %s gen %s others %s",
                rate,
                result["reason"],
                result["dlv_s"],
                result["server_cpu_pct"],
                result["gen_cpu_pct"],
                result["others_cpu_pct"],
            )
            return result

        steps = await ladder.climb(plan, step) if fleet.clients else []
    finally:
        fleets.abort_all(fleet.clients)
    best, limit = ladder.best_and_limit(steps)
    lossless = ladder.lossless_best(steps)
    result["best"] = best
    result["limit"] = limit
    result["lossless_msg_s"] = lossless["rate_msg_s"] if lossless else None
    result["lossless_dlv_s"] = lossless["dlv_s"] if lossless else None
    result["lossless_p99_ms"] = lossless["p99_ms"] if lossless else None
    result["noisy"] = any(s["noisy"] for s in steps)
    result["others_cpu_max_pct"] = max((float(s["others_cpu_pct"]) for s in steps), default=None)
    result["peak_dlv_s"] = max((float(s["dlv_s"]) for s in steps), default=0.0)
    result["restarts"] = restarts
    result["steps"] = steps
    return result


async def _idle(ctx: Context, count: int, room_size: int, hold_s: float, settle_s: float) -> Result:
    rooms = math.ceil(count / room_size)
    swarm = Swarm(rooms)
    fleet, result = await _connect(ctx, swarm, [i // room_size for i in range(count)], settle_s)
    try:
        await asyncio.sleep(hold_s)
        held = procstat.sample(ctx.server.pid)
        result["alive_after_hold"] = len(fleet.live())
        result["rss_hold_mb"] = _mb(held.rss)
        result["lost_connections"] = swarm.lost_connections
    finally:
        fleets.abort_all(fleet.clients)
    return result


async def _churn_worker(
    ctx: Context, swarm: Swarm, room: int, deadline: float, budget: list[int], tally: Counter[str]
) -> None:
    """Connect, wait until joined, close; repeat until the deadline or the shared budget ends."""
    loop = asyncio.get_running_loop()
    serial = 0
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        serial += 1
        try:
            client = await fleets.open_client(
                swarm, ctx.server.port, room * 1_000_000 + serial, room, "c", ctx.connect_timeout
            )
        except Exception as exc:
            tally[f"connect:{type(exc).__name__}"] += 1
            await asyncio.sleep(0.05)
            continue
        if ctx.dialect == "rooms" and client.joins == 0:
            client.join_waiter = loop.create_future()
            try:
                await asyncio.wait_for(client.join_waiter, ctx.connect_timeout)
            except TimeoutError:
                tally["join_timeout"] += 1
        if await fleets.close_gracefully(client, ctx.connect_timeout):
            tally["cycles"] += 1
        else:
            tally["close_timeout"] += 1


async def _churn(
    ctx: Context, workers: int, standing: int, duration_s: float, max_cycles: int, settle_s: float
) -> Result:
    swarm = Swarm(workers)
    fleet, result = await _connect(
        ctx, swarm, [w for w in range(workers) for _ in range(standing)], settle_s
    )
    try:
        for client in fleet.clients:
            client.joins = client.leaves = 0
        before = procstat.sample(ctx.server.pid)
        window = procstat.Window.open(ctx.server.pid)
        tally: Counter[str] = Counter()
        budget = [max_cycles]
        deadline = time.monotonic() + duration_s
        await asyncio.gather(
            *(_churn_worker(ctx, swarm, w, deadline, budget, tally) for w in range(workers))
        )
        churned = procstat.sample(ctx.server.pid)
        usage = window.close(ctx.server.pid)
        await fleets.wait_quiet(swarm, 1.0, 5.0)
        after = procstat.sample(ctx.server.pid)
        cycles = tally.pop("cycles", 0)
        rooms_dialect = ctx.dialect == "rooms"
        result.update(
            {
                "cycles": cycles,
                "cycles_per_s": round(cycles / (churned.wall - before.wall), 1),
                "churn_failures": dict(tally),
                "notices": sum(c.joins + c.leaves for c in fleet.clients)
                if rooms_dialect
                else None,
                "notices_expected": 2 * cycles * standing if rooms_dialect else None,
                "churn_cpu_pct": usage["server_cpu_pct"],
                "churn_others_cpu_pct": usage["others_cpu_pct"],
                "noisy": usage["others_cpu_pct"] >= ctx.quiet_pct,
                "rss_before_mb": _mb(before.rss),
                "rss_after_mb": _mb(after.rss),
                "lost_connections": swarm.lost_connections,
            }
        )
    finally:
        fleets.abort_all(fleet.clients)
    return result


def ladder_case(
    scenario: str,
    rooms: int,
    per_room: int,
    plan: ladder.LadderPlan,
    rules: StepRules,
    settle_s: float,
) -> Case:
    """S1/S2/S3: `rooms` rooms of `per_room` users, climbing the offered message rate."""
    per_step = rules.duration_s + rules.drain_s + 11.0
    # Users connect once, and again at most before the first step and each refining step.
    connecting = 30.0 + rooms * per_room / 150 + settle_s
    timeout = 60.0 + (2 + plan.refine) * connecting + plan.worst_steps * per_step
    run = functools.partial(
        _ladder, rooms=rooms, per_room=per_room, plan=plan, rules=rules, settle_s=settle_s
    )
    return Case(scenario, f"{rooms} room x {per_room}", "ladder", timeout, run)


def idle_case(scenario: str, count: int, room_size: int, hold_s: float, settle_s: float) -> Case:
    """S4: `count` idle users in rooms of `room_size`, held open for `hold_s`."""
    timeout = 90.0 + count / 150 + settle_s + hold_s
    run = functools.partial(
        _idle, count=count, room_size=room_size, hold_s=hold_s, settle_s=settle_s
    )
    return Case(scenario, f"{count} idle", "idle", timeout, run)


def churn_case(
    scenario: str, workers: int, standing: int, duration_s: float, max_cycles: int
) -> Case:
    """S5: `workers` loops of connect/join/close, each into a room with `standing` listeners."""
    timeout = 90.0 + duration_s
    run = functools.partial(
        _churn,
        workers=workers,
        standing=standing,
        duration_s=duration_s,
        max_cycles=max_cycles,
        settle_s=20.0,
    )
    return Case(scenario, f"{workers} churners", "churn", timeout, run)
