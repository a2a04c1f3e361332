"""Abuse limits: a per-connection token bucket and per-process connection counts.

Both are plain objects with no I/O; the consumer asks them and turns a refusal into the
ClientError they raise (docs/protocol.md, docs/operations.md).
"""

from collections import Counter
from dataclasses import dataclass, field

from rooms import errors
from rooms.errors import ClientError


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each frame costs one token."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.updated = float("-inf")

    def take(self, now: float) -> bool:
        """Spend one token at time `now` (seconds, monotonic); False when none is left."""
        if self.rate <= 0:
            return True
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class ConnectionCounter:
    """Open room connections in this process, in total and per room group."""

    def __init__(self) -> None:
        self.total = 0
        self.per_group: Counter[str] = Counter()

    def acquire(self, group: str, max_total: int, max_per_group: int) -> None:
        """Count one more member of `group`, or raise SERVER_FULL / ROOM_FULL (0 = no limit)."""
        if max_total and self.total >= max_total:
            raise ClientError(
                errors.SERVER_FULL,
                "The server is at its connection limit; try again later.",
                errors.WS_4503_UNAVAILABLE,
            )
        if max_per_group and self.per_group[group] >= max_per_group:
            raise ClientError(
                errors.ROOM_FULL,
                f"This room is full ({max_per_group} members); try again later.",
                errors.WS_4503_UNAVAILABLE,
            )
        self.total += 1
        self.per_group[group] += 1

    def release(self, group: str) -> None:
        """Forget one member of `group`; a group with no member left is dropped."""
        self.total -= 1
        self.per_group[group] -= 1
        if self.per_group[group] <= 0:
            del self.per_group[group]

    @property
    def rooms(self) -> int:
        """Rooms with at least one member connected to this process."""
        return len(self.per_group)


connections = ConnectionCounter()
