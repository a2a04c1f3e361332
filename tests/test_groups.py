"""Room names map to valid, distinct channel-layer group names."""

import pytest
from channels.layers import BaseChannelLayer

from rooms.core.groups import room_group

ROOMS = [
    "Room1",
    "room1",
    "a.b-c_d",
    "Room 1",
    "Room%201",
    "Кухня",
    "🍳",
    "a" * 80,
    "a" * 81,
    "a" * 100,
    "hash.x",
    "room.x",
    "x/y",
    "é",
    "e\u0301",
]


@pytest.mark.parametrize("room", ROOMS)
def test_every_room_gets_a_group_name_layers_accept(room):
    assert BaseChannelLayer().require_valid_group_name(room_group(room))


def test_distinct_rooms_never_share_a_group():
    assert len({room_group(room) for room in ROOMS}) == len(ROOMS)


def test_simple_room_names_stay_readable():
    assert room_group("Room1") == "room.Room1"
