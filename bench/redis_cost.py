"""What a chat message costs Redis: the message script run for MESSAGES messages over ROOMS
rooms, in process (no server, no clients), against the shards of REDIS_URL, each room's
channel subscribed by two connections as two server processes would. Per shard it prints
the script's time from `INFO commandstats` (every command, the script's inner ones inside
it), Redis' whole CPU time (`used_cpu_user` + `used_cpu_sys`: parsing, replies, pub/sub
delivery too), and the ceiling that CPU time allows.

    REDIS_URL=redis://127.0.0.1:6379/13,redis://127.0.0.1:6380/13 \\
        .venv/bin/python -m bench.redis_cost

The machine's other work shares Redis' cores: run it on a quiet machine, more than once.
"""

import argparse
import asyncio
import os
import tempfile
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from rooms.core.events import room_event  # noqa: E402
from rooms.core.groups import room_group  # noqa: E402
from rooms.state import clients  # noqa: E402
from rooms.state.redis_sequence import RedisSequence  # noqa: E402

TEXT = "x" * 56  # with "Nick: ", a 64-byte message


def _cpu(info: dict) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _drain(pubsub) -> None:
    while True:
        await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)


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
    shards = clients.count()
    subscribers = []
    for _ in range(2):  # two server processes, each subscribed to every room's channel
        for shard in range(shards):
            pubsub = clients.connect(shard).pubsub()
            mine = [n for n in names if clients.shard_for(room_group(n)) == shard]
            if mine:
                await pubsub.subscribe(*(f"{prefix}__group__{{{room_group(n)}}}" for n in mine))
                subscribers.append(asyncio.ensure_future(_drain(pubsub)))
    for name in names:  # each room's counter made (and the database read) before measuring
        await sequence.publish(None, room_group(name), name, "Nick", "warm", room_event())
    before = []
    for shard in range(shards):
        client = clients.connect(shard)
        await client.config_resetstat()
        before.append(_cpu(await client.info("cpu")))
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
    print(f"{messages} messages over {rooms} rooms and {shards} shard(s) in {elapsed:.2f} s")
    for shard in range(shards):
        client = clients.connect(shard)
        cpu = _cpu(await client.info("cpu")) - before[shard]
        stats = await client.info("commandstats")
        count = sum(
            messages // rooms + (n < messages % rooms)
            for n, name in enumerate(names)
            if clients.shard_for(room_group(name)) == shard
        )
        script = stats.get("cmdstat_evalsha", {"usec": 0, "calls": 0})
        inner = ", ".join(
            f"{name.removeprefix('cmdstat_')} {stat['usec'] / max(count, 1):.1f}"
            for name, stat in sorted(stats.items(), key=lambda item: -item[1]["usec"])
            if name not in ("cmdstat_info", "cmdstat_config", "cmdstat_evalsha")
        )
        per_message = cpu * 1e6 / max(count, 1)
        per_call = script["usec"] / max(script["calls"], 1)
        print(
            f"shard {shard}: {count} messages; script {per_call:.1f}"
            f" us per call; Redis CPU {per_message:.1f} us per message, a ceiling near"
            f" {1e6 / per_message:,.0f} messages/s per shard\n  inside, us per message: {inner}"
        )
    for task in subscribers:
        task.cancel()
    await asyncio.gather(*subscribers, return_exceptions=True)
    for shard in range(shards):
        client = clients.connect(shard)
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
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
