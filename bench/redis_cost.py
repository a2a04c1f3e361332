"""What a chat message costs Redis: the message script run for MESSAGES messages over ROOMS
rooms, in process (no server, no clients), against the shards of REDIS_URL, each room's
channel subscribed by two channel layers as by two server processes. Per Redis server (a
shard, or a cluster master) it prints the script's time from `INFO commandstats` (every
command, the script's inner ones inside it; wall-clock time, which a busy machine swells),
Redis' whole CPU time (`used_cpu_user` + `used_cpu_sys`: parsing, replies, pub/sub
delivery too), and the ceiling that CPU time allows.

    REDIS_URL=redis://127.0.0.1:6379/13,redis://127.0.0.1:6380/13 \\
        .venv/bin/python -m bench.redis_cost
    REDIS_CLUSTER=1 REDIS_URL=<every master, comma-separated> .venv/bin/python -m bench.redis_cost

The machine's other work shares Redis' cores: run it on a quiet machine, more than once.
"""

import argparse
import asyncio
import os
import tempfile
import time

import django
import redis.asyncio as aioredis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from rooms.core.events import room_event  # noqa: E402
from rooms.core.groups import room_group  # noqa: E402
from rooms.layers.redis_pubsub import ResilientRedisPubSubChannelLayer  # noqa: E402
from rooms.state import clients  # noqa: E402
from rooms.state.redis_sequence import RedisSequence  # noqa: E402

TEXT = "x" * 56  # with "Nick: ", a 64-byte message


def _cpu(info: dict) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _stats(node) -> tuple[float, dict]:
    return _cpu(await node.info("cpu")), await node.info("commandstats")


async def run(rooms: int, messages: int, concurrency: int, prefix: str) -> None:
    sequence = RedisSequence(
        prefix,
        settings.ROOMS_HISTORY_MAX,
        settings.ROOMS_RECENT_CACHE_BYTES,
        settings.ROOMS_ROOM_KEY_TTL,
        publishes=True,
        pending=lambda room: 0,
        sweep=1.0,
    )
    names = [f"Bench{n}" for n in range(rooms)]
    # Two server processes' layers, each subscribed to every room's channel.
    layers = [
        ResilientRedisPubSubChannelLayer(
            hosts=settings.REDIS_URLS, prefix=prefix, cluster=settings.REDIS_CLUSTER
        )
        for _ in range(2)
    ]
    for layer in layers:
        member = await layer.new_channel()  # its messages go nowhere: only Redis is measured
        for name in names:
            await layer.group_add(room_group(name), member)
    for name in names:  # each room's counter made (and the database read) before measuring
        await sequence.publish(None, room_group(name), name, "Nick", "warm", room_event())
    # Each Redis server (shard, or cluster master) on its own.
    nodes = [aioredis.Redis.from_url(url) for url in settings.REDIS_URLS]
    for node in nodes:
        await node.config_resetstat()
    before = [(await _stats(node))[0] for node in nodes]
    queue = asyncio.Queue()
    for n in range(messages):
        queue.put_nowait(names[n % rooms])

    async def sender() -> None:
        while not queue.empty():
            name = queue.get_nowait()
            await sequence.publish(None, room_group(name), name, "Nick", TEXT, room_event())

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    mode = "cluster masters" if settings.REDIS_CLUSTER else "shard(s)"
    print(f"{messages} messages over {rooms} rooms and {len(nodes)} {mode} in {elapsed:.2f} s")
    for url, node, cpu_before in zip(settings.REDIS_URLS, nodes, before, strict=True):
        cpu, stats = await _stats(node)
        script = stats.get("cmdstat_evalsha", {"usec": 0, "calls": 0})
        count = script["calls"] - script.get("failed_calls", 0) - script.get("rejected_calls", 0)
        inner = ", ".join(
            f"{name.removeprefix('cmdstat_')} {stat['usec'] / max(count, 1):.1f}"
            for name, stat in sorted(stats.items(), key=lambda item: -item[1]["usec"])
            if name not in ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_evalsha")
        )
        per_message = (cpu - cpu_before) * 1e6 / max(count, 1)
        print(
            f"{url}: {count} messages; script {script['usec'] / max(script['calls'], 1):.1f}"
            f" us per call (wall clock); Redis CPU {per_message:.1f} us per message, a ceiling"
            f" near {1e6 / per_message:,.0f} messages/s\n  inside, us per message: {inner}"
        )
        keys = [key async for key in node.scan_iter(f"{prefix}*")]
        for key in keys:
            await node.delete(key)
        await node.aclose()
    for layer in layers:
        await layer.flush()
    await clients.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_cost", description=__doc__)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=64, help="messages in flight")
    parser.add_argument("--prefix", default="bench-cost")
    args = parser.parse_args()
    if not settings.REDIS_URL:
        parser.error("set REDIS_URL (one URL, or several comma-separated)")
    call_command("migrate", verbosity=0)
    asyncio.run(run(args.rooms, args.messages, args.concurrency, args.prefix))


if __name__ == "__main__":
    main()
