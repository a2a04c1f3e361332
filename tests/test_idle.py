"""The idle wheel (rooms.chat.idle): who is called, and when."""

import asyncio
import time

from rooms.chat import idle
from rooms.chat.idle import RESOLUTION, IdleTimer


async def test_a_silent_client_is_called_idle_after_its_timeout_and_not_long_after():
    fired: dict[str, float] = {}
    start = time.monotonic()
    IdleTimer(0.3, lambda: fired.setdefault("silent", time.monotonic() - start))
    await asyncio.sleep(0.3 + RESOLUTION + 0.2)
    assert 0.3 <= fired["silent"] <= 0.3 + RESOLUTION + 0.1


async def test_touched_timers_wait_for_their_new_deadline_and_cancelled_ones_never_fire():
    fired: list[str] = []
    talking = IdleTimer(0.6, lambda: fired.append("talking"))
    gone = IdleTimer(0.6, lambda: fired.append("gone"))
    silent = [IdleTimer(0.6, lambda n=n: fired.append(f"silent{n}")) for n in range(100)]
    gone.cancel()
    for _ in range(8):  # 1.6 s of talk
        await asyncio.sleep(0.2)
        talking.touch(time.monotonic())
    assert sorted(fired) == sorted(f"silent{n}" for n in range(100))
    await asyncio.sleep(0.6 + RESOLUTION + 0.2)
    assert fired[-1] == "talking" and "gone" not in fired
    assert all(timer.slot is None for timer in [talking, gone, *silent])


async def test_a_loop_without_timers_keeps_no_wheel():
    timer = IdleTimer(0.1, lambda: None)
    assert asyncio.get_running_loop() in idle._wheels
    await asyncio.sleep(0.1 + RESOLUTION + 0.2)
    assert timer.slot is None
    assert asyncio.get_running_loop() not in idle._wheels
