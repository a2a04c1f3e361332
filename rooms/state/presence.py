"""Who is in which room, with nicknames unique per room: two nicknames are the same when
their `names.nickname_key` is (case, width and look-alike characters folded).

Two implementations of one small interface: here, in this process's memory (the in-memory
layer); in rooms.state.redis_presence, in Redis, shared by every process.
"""

from typing import NamedTuple

from rooms.core import errors, names


class Member(NamedTuple):
    """One member as presence knows it: whom a moderator's command reaches."""

    nickname: str
    channel: str
    user_id: int | None  # None: anonymous


def sorted_nicknames(nicknames) -> list[str]:
    """Nicknames as members lists show them: case-insensitively, then as typed."""
    return sorted(nicknames, key=lambda nickname: (nickname.casefold(), nickname))


class InProcessPresence:
    """Members in this process's memory."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, Member]] = {}  # group -> nickname key -> member
        self._names: dict[str, str] = {}  # group -> room name

    async def claim(
        self, room: str, group: str, nickname: str, channel: str, user_id: int | None = None
    ) -> None:
        """Make `nickname` this channel's in the room, or raise NICKNAME_TAKEN."""
        members = self._rooms.setdefault(group, {})
        key = names.nickname_key(nickname)
        if key in members:
            raise errors.nickname_taken(nickname)
        members[key] = Member(nickname, channel, user_id)
        self._names[group] = room

    async def release(self, room: str, group: str, nickname: str, channel: str) -> None:
        """Free the nickname, if this channel still holds it."""
        members = self._rooms.get(group, {})
        key = names.nickname_key(nickname)
        member = members.get(key)
        if member is not None and member.channel == channel:
            del members[key]
        if not members:
            self._rooms.pop(group, None)
            self._names.pop(group, None)

    async def members(self, group: str) -> list[str]:
        """Nicknames in the room, sorted case-insensitively."""
        return sorted_nicknames(member.nickname for member in self._rooms.get(group, {}).values())

    async def member(self, group: str, nickname: str) -> Member | None:
        """The member holding `nickname` (or a look-alike of it) in the room, if any."""
        return self._rooms.get(group, {}).get(names.nickname_key(nickname))

    async def occupied(self) -> dict[str, int]:
        """Room name -> member count, for every room with members."""
        return {self._names[group]: len(members) for group, members in self._rooms.items()}

    async def close(self) -> None:
        """Nothing to release in-process."""
