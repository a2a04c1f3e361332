"""rooms.queues: the application input queue that rooms.serve gives Daphne."""

import asyncio

from rooms.queues import ApplicationQueue


async def test_items_come_out_in_the_order_they_were_put():
    queue = ApplicationQueue()
    for n in range(3):
        queue.put_nowait({"n": n})
    assert [(await queue.get())["n"] for _ in range(3)] == [0, 1, 2]


async def test_a_waiting_get_wakes_on_the_next_put():
    queue = ApplicationQueue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait({"type": "websocket.connect"})
    assert await getter == {"type": "websocket.connect"}


async def test_a_cancelled_get_takes_nothing():
    queue = ApplicationQueue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait({"n": 1})
    getter.cancel()  # woken, but cancelled before it ran
    await asyncio.gather(getter, return_exceptions=True)
    assert await queue.get() == {"n": 1}
