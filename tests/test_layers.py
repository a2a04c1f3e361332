"""The fan-out in-memory layer: same API as Channels', one shared message per member."""

import asyncio

from rooms.layers import FanoutInMemoryChannelLayer


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
