"""What persistence costs the fan-out path, in process: messages published to a room of
MEMBERS through the in-memory layer, with and without recording them for the batched
writer (whose flushes run during the measurement, on a real SQLite file or DATABASE_URL).

    DATABASE_URL=sqlite:////tmp/bench.sqlite3 .venv/bin/python -m bench.persistence
"""

import asyncio
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django.setup()

from django.core.management import call_command  # noqa: E402

from rooms.core.events import room_event  # noqa: E402
from rooms.layers.memory import FanoutInMemoryChannelLayer  # noqa: E402
from rooms.state.history import HistoryWriter, Pending  # noqa: E402
from rooms.state.sequence import InProcessSequence  # noqa: E402

MEMBERS = 100
MESSAGES = 20_000


async def run(persist: bool) -> tuple[float, float]:
    """Seconds of wall and CPU time per message published (and delivered to every queue)."""
    layer = FanoutInMemoryChannelLayer(capacity=MESSAGES + 10)
    for n in range(MEMBERS):
        await layer.group_add("room.Bench", f"member.{n}")
    writer = HistoryWriter(0.2, 500)
    sequence = InProcessSequence(1000, 256 * 1024, writer.highest_pending, 0.2)
    await sequence.publish(layer, "room.Bench", "Bench", "warm", "up", room_event())
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(MESSAGES):
        stamp = await sequence.publish(layer, "room.Bench", "Bench", "Nick", f"m{n}", room_event())
        if persist:
            writer.record(Pending("Bench", stamp.id, stamp.ts, "Nick", f"m{n}"))
        if n % 100 == 0:
            for queue in layer.channels.values():
                while not queue.empty():
                    queue.get_nowait()
            await asyncio.sleep(0)  # let the writer's task run, as the server would
    await writer.close()
    return (time.perf_counter() - wall) / MESSAGES, (time.process_time() - cpu) / MESSAGES


def main() -> None:
    call_command("migrate", verbosity=0)
    for persist in (False, True, False, True):
        wall, cpu = asyncio.run(run(persist))
        label = "with persistence   " if persist else "without persistence"
        print(f"{label}: {wall * 1e6:6.1f} us wall, {cpu * 1e6:6.1f} us CPU per message")


if __name__ == "__main__":
    main()
