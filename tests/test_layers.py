"""The fan-out in-memory layer: same API as Channels', one shared message per member."""

import asyncio

from rooms.layers.memory import FanoutInMemoryChannelLayer


async def test_group_send_reaches_every_member_in_send_order():
    layer = FanoutInMemoryChannelLayer()
    channels = [await layer.new_channel() for _ in range(3)]
    for channel in channels:
        await layer.group_add("room.a", channel)
    for n in range(5):
        await layer.group_send("room.a", {"type": "room.event", "n": n})
    for channel in channels:
        assert [(await layer.receive(channel))["n"] for _ in range(5)] == list(range(5))


async def test_group_send_skips_members_that_left_and_other_groups():
    layer = FanoutInMemoryChannelLayer()
    stay, leave, other = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("room.a", stay)
    await layer.group_add("room.a", leave)
    await layer.group_add("room.b", other)
    await layer.group_discard("room.a", leave)
    await layer.group_send("room.a", {"type": "room.event"})
    assert await layer.receive(stay) == {"type": "room.event"}
    for channel in (leave, other):
        try:
            await asyncio.wait_for(layer.receive(channel), 0.05)
        except TimeoutError:
            continue
        raise AssertionError(f"{channel} received a message of another group")


async def test_full_channel_drops_are_counted_and_others_still_receive():
    layer = FanoutInMemoryChannelLayer(capacity=2)
    slow, fast = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("room.a", slow)
    await layer.group_add("room.a", fast)
    for n in range(3):
        await layer.group_send("room.a", {"type": "room.event", "n": n})
        await layer.receive(fast)
    assert layer.dropped == 1
    assert [(await layer.receive(slow))["n"] for _ in range(2)] == [0, 1]


async def test_attached_members_are_called_in_send_order_and_queued_ones_still_receive():
    layer = FanoutInMemoryChannelLayer()
    called, queued = await layer.new_channel(), await layer.new_channel()
    seen: list[int] = []
    layer.attach(called, lambda message: seen.append(message["n"]), lambda message: None)
    for channel in (called, queued):
        await layer.group_add("room.a", channel)
    for n in range(3):
        await layer.group_send("room.a", {"type": "room.event", "n": n})
    assert seen == [0, 1, 2]
    assert [(await layer.receive(queued))["n"] for _ in range(3)] == [0, 1, 2]


async def test_a_failing_receiver_costs_no_other_member_its_message():
    layer = FanoutInMemoryChannelLayer()
    seen: list[str] = []

    def fail(message: dict) -> None:
        raise RuntimeError("broken member")

    for receiver in (seen.append, fail, seen.append):
        channel = await layer.new_channel()
        layer.attach(channel, receiver, fail)
        await layer.group_add("room.a", channel)
    await layer.group_send("room.a", {"type": "room.event"})
    assert len(seen) == 2


async def test_a_detached_member_is_called_no_more():
    layer = FanoutInMemoryChannelLayer()
    channel = await layer.new_channel()
    seen: list[dict] = []
    layer.attach(channel, seen.append, seen.append)
    await layer.group_add("room.a", channel)
    await layer.detach(channel)
    await layer.group_send("room.a", {"type": "room.event"})
    assert seen == []


async def test_a_message_to_an_attached_channel_goes_to_its_control_not_its_queue():
    layer = FanoutInMemoryChannelLayer()
    channel, other = await layer.new_channel(), await layer.new_channel()
    events: list[dict] = []
    controls: list[dict] = []
    layer.attach(channel, events.append, controls.append)
    await layer.group_add("room.a", channel)
    await layer.send(channel, {"type": "room.evict", "code": "X"})
    await layer.group_send("room.a", {"type": "room.event"})
    assert controls == [{"type": "room.evict", "code": "X"}]
    assert events == [{"type": "room.event"}]
    await layer.send(other, {"type": "direct"})  # not attached: queued, as before
    assert await layer.receive(other) == {"type": "direct"}
