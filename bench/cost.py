"""Server CPU per message and per connection, for servers side by side (make bench's
ladders measure capacity; this measures cost, which a busy machine disturbs far less).

    python -m bench.cost [--servers rooms-serve,rooms-fast] [--rounds 3] [--rate 1500]
                         [--layer memory|redis-pubsub|...]

For each round and each server in turn (A B A B ...): a fresh server pinned to one core,
1,000 clients joining 100 rooms of 10 (server CPU and RSS per connection), then `--rate`
messages/s for `--seconds` seconds spread over every client (server CPU per message and
per delivery, every delivery checked), then the clients leave. Prints one line a
measurement and the medians.
"""

import argparse
import asyncio
import logging
import statistics
import time
from pathlib import Path

from bench import configs, fleet, procstat, servers, traffic
from bench.swarm import Swarm

log = logging.getLogger(__name__)
ROOMS, ROOM_SIZE = 100, 10
FAST = (
    "rooms-fast={python} -m rooms.server.fast -b 127.0.0.1 -p {port} chatproject.asgi:application"
)


async def measure(spec: configs.ServerSpec, args: argparse.Namespace, logs: Path) -> dict:
    """One server: connect, send at a fixed rate, leave; CPU and memory per unit."""
    server = await servers.start(spec, logs / f"{spec.label}.log", args.server_cpus, 9, 30.0)
    try:
        count = ROOMS * ROOM_SIZE
        swarm = Swarm(ROOMS)
        await asyncio.sleep(1.0)
        start = procstat.sample(server.pid)
        room_of = [i % ROOMS for i in range(count)]
        crowd = await fleet.connect_fleet(swarm, server.port, room_of, 50, 10.0, 60.0)
        await fleet.wait_quiet(swarm, 0.5, 10.0)
        joined = procstat.sample(server.pid)
        rules = traffic.StepRules(duration_s=args.seconds)
        step = await traffic.run_step(crowd, spec.dialect, args.rate, 1, server.pid, rules)
        cpu = procstat.sample(server.pid).cpu_s - joined.cpu_s
        fleet.abort_all(crowd.clients)
        ok = len(crowd.clients)
        return {
            "server": spec.label,
            "conns": ok,
            "connect_us": 1e6 * (joined.cpu_s - start.cpu_s) / max(ok, 1),
            "rss_kb": (joined.rss - start.rss) / 1000 / max(ok, 1),
            "sent": step["sent"],
            "lost": step["expected"] - step["delivered"],
            "message_us": 1e6 * cpu / max(step["sent"], 1),
            "delivery_us": 1e6 * cpu / max(step["delivered"], 1),
            "p50_ms": step["p50_ms"],
        }
    finally:
        await servers.stop(server, 10.0)


async def main(args: argparse.Namespace) -> None:
    custom = dict(item.split("=", 1) for item in args.custom)
    specs = [configs.resolve(n, args.layer, custom, {}) for n in args.servers.split(",")]
    logs = Path("bench/logs") / time.strftime("%Y%m%dT%H%M%SZ-cost", time.gmtime())
    rows: dict[str, list[dict]] = {spec.label: [] for spec in specs}
    for round_ in range(args.rounds):
        for spec in specs:
            row = await measure(spec, args, logs)
            rows[spec.label].append(row)
            print(
                f"round {round_ + 1} "
                + " ".join(
                    f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                ),
                flush=True,
            )
    print("\nmedians:")
    for label, results in rows.items():
        medians = {
            k: statistics.median(r[k] for r in results)
            for k in ("connect_us", "rss_kb", "message_us", "delivery_us")
        }
        print(
            f"{label}: " + ", ".join(f"{k} {v:.1f}" for k, v in medians.items()),
            f"lost {sum(r['lost'] for r in results)}",
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--servers", default="rooms-serve,rooms-fast")
    parser.add_argument("--custom", action="append", default=[], metavar="NAME=CMD")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1500.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--layer", default="memory", help="channel layer, as in make bench")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args()))
