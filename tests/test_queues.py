"""rooms.core.queues: the per-connection queue of both launchers and the Redis layer."""

import asyncio

from rooms.core.queues import INPUT_HIGH, InputQueue, SingleReaderQueue


async def test_items_come_out_in_the_order_they_were_put():
    queue = SingleReaderQueue()
    for n in range(3):
        queue.put_nowait({"n": n})
    assert [(await queue.get())["n"] for _ in range(3)] == [0, 1, 2]


async def test_a_waiting_get_wakes_on_the_next_put():
    queue = SingleReaderQueue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait({"type": "websocket.connect"})
    assert await getter == {"type": "websocket.connect"}


async def test_a_cancelled_get_takes_nothing():
    queue = SingleReaderQueue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait({"n": 1})
    getter.cancel()  # woken, but cancelled before it ran
    await asyncio.gather(getter, return_exceptions=True)
    assert await queue.get() == {"n": 1}


async def test_its_length_is_what_waits_for_the_reader():
    queue = SingleReaderQueue()
    assert len(queue) == 0 and not queue
    for n in range(3):
        queue.put_nowait({"n": n})
    assert len(queue) == 3
    await queue.get()
    assert len(queue) == 2


async def test_an_input_queue_pauses_its_client_once_full_and_resumes_once_all_is_taken():
    calls: list[str] = []
    queue = InputQueue(lambda: calls.append("pause"), lambda: calls.append("resume"))
    for n in range(INPUT_HIGH + 10):
        queue.put_nowait({"n": n})
    assert calls == ["pause"]  # once, at INPUT_HIGH
    for n in range(INPUT_HIGH + 9):
        assert (await queue.get())["n"] == n
    assert calls == ["pause"]  # one message still waits
    assert (await queue.get())["n"] == INPUT_HIGH + 9
    assert calls == ["pause", "resume"]
    queue.put_nowait({"n": 0})
    assert await queue.get() == {"n": 0} and calls == ["pause", "resume"]
