"""The database's last id of rooms, read for many rooms at once (rooms.state.last_ids)."""

import asyncio

from asgiref.sync import sync_to_async
from django.utils import timezone

from rooms.models import Room
from rooms.state.last_ids import stored_last_id


@sync_to_async
def rooms_with_last_ids(last_ids: dict[str, int]) -> None:
    for name, last_id in last_ids.items():
        Room.objects.create(name=name, last_activity=timezone.now(), last_id=last_id)


async def test_rooms_asked_for_at_once_each_get_their_own_last_id_and_a_new_room_zero():
    await rooms_with_last_ids({f"Room{n}": 10 * n for n in range(1, 1201)})
    names = [f"Room{n}" for n in range(1, 1201)] + ["Room1", "Brand new"]
    got = await asyncio.gather(*(stored_last_id(name) for name in names))
    assert got == [10 * n for n in range(1, 1201)] + [10, 0]


async def test_a_room_asked_for_after_a_read_gets_what_the_database_holds_then():
    assert await stored_last_id("Later") == 0
    await rooms_with_last_ids({"Later": 7})
    assert await stored_last_id("Later") == 7
