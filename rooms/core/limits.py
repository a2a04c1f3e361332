"""Abuse limits: token buckets, connection counts per process, room and client address,
and the largest message a client may send.

Plain objects with no I/O; the consumer asks them and turns a refusal into the
ClientError they raise (docs/protocol.md, docs/operations.md). Client addresses are the
client's to choose (a /64 holds 2^64 of them, a botnet many IPv4 ones): every map keyed by
one forgets entries that carry no information and holds at most MAX_TRACKED_ADDRESSES.
"""

import socket
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from rooms.core import errors
from rooms.core.errors import ClientError

# Entries each per-address map keeps at most; beyond, the oldest goes. Full, with IPv6
# keys: about 10 MB for the connection counts, 16 MB for the join buckets.
MAX_TRACKED_ADDRESSES = 65_536
IPV6_PREFIX = 64  # one subscriber usually owns a whole /64: its addresses count as one
MAX_ADDRESS_LENGTH = 64  # what is kept of a client "address" that is not an IP address
IPV4_MAPPED = bytes(10) + b"\xff\xff"


# A JSON client may write each character of its text as a \uXXXX escape, and a character
# outside the Basic Multilingual Plane as two: 12 bytes for each character that
# MAX_MESSAGE_LENGTH counts. The rest of {"type": "message", "text": ""}, its letters
# escaped too and with a space after each separator, takes 106 bytes. (A text frame takes
# at most 4 bytes a character, and one more character for the "//" escape.)
ESCAPED_CHARACTER_BYTES = 12
ENVELOPE_BYTES = 256


def message_bytes_needed(max_length: int) -> int:
    """The most bytes a valid chat message of `max_length` characters takes on the wire."""
    return max_length * ESCAPED_CHARACTER_BYTES + ENVELOPE_BYTES


def default_frame_bytes(max_length: int) -> int:
    """MAX_FRAME_BYTES unless set: what the longest valid message needs, rounded up to a
    power of two (64 KiB for 4096 characters). autobahn buffers up to that per connection."""
    return 1 << (message_bytes_needed(max_length) - 1).bit_length()


def address_key(client: Sequence | None) -> str | None:
    """What a client's per-address limits are counted under: its IPv4 address, or the /64
    of its IPv6 one; None when the server knows no address (a UNIX socket)."""
    # inet_pton: about 1 µs a join where the ipaddress module takes 15 (IPv4) to 100 (IPv6).
    if not client:
        return None
    host = str(client[0])
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, host))
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])  # no zone index
    except OSError:  # a proxy header that is no address: count it as it is
        return host[:MAX_ADDRESS_LENGTH]
    if packed.startswith(IPV4_MAPPED):  # ::ffff:1.2.3.4, IPv4 on a dual-stack socket
        return socket.inet_ntop(socket.AF_INET, packed[len(IPV4_MAPPED) :])
    network = packed[: IPV6_PREFIX // 8] + bytes(16 - IPV6_PREFIX // 8)
    return f"{socket.inet_ntop(socket.AF_INET6, network)}/{IPV6_PREFIX}"


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

    def full(self, now: float) -> bool:
        """Whether the bucket is back to its burst at `now`: a new one would do the same."""
        return self.tokens + (now - self.updated) * self.rate >= self.burst


class JoinBudget:
    """A token bucket of joins per client address, so that reconnecting does not refill
    it: every join costs a token, refused or not, and a join refused here announces
    nothing to the room. Also messages posted through the HTTP API per user (`posts`)."""

    def __init__(
        self,
        cap: int = MAX_TRACKED_ADDRESSES,
        refuse: Callable[[float], ClientError] = errors.join_rate_limited,
    ) -> None:
        self.cap = cap
        self.refuse = refuse
        self.buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()  # least recent first

    def spend(self, key: Hashable | None, now: float, rate: float, burst: float) -> None:
        """Charge one to `key` (a client address, a user id) at `now`, or raise
        `refuse(rate)`, JOIN_RATE_LIMITED unless told otherwise (rate 0: no limit)."""
        if key is None or rate <= 0:
            return
        buckets = self.buckets
        # Forget the buckets full again, least recently used first. The sweep stops at the
        # first that is not: one may wait up to burst/rate seconds behind it.
        while buckets and next(iter(buckets.values())).full(now):
            buckets.popitem(last=False)
        bucket = buckets.get(key)
        if bucket is not None:
            buckets.move_to_end(key)
        else:
            if len(buckets) >= self.cap:
                buckets.popitem(last=False)
            bucket = buckets[key] = TokenBucket(rate, burst)
        if not bucket.take(now):
            raise self.refuse(rate)


class ConnectionCounter:
    """Open room connections in this process, in total, per room group and per client
    address."""

    def __init__(self, cap: int = MAX_TRACKED_ADDRESSES) -> None:
        self.total = 0
        self.per_group: Counter[str] = Counter()
        self.per_address: OrderedDict[str, int] = OrderedDict()  # address -> open, oldest first
        self.cap = cap

    def acquire(
        self,
        group: str,
        max_total: int,
        max_per_group: int,
        address: str | None = None,
        max_per_address: int = 0,
    ) -> None:
        """Count one more member of `group` from `address`, or raise SERVER_FULL,
        TOO_MANY_CONNECTIONS or ROOM_FULL (0 = no limit)."""
        if max_total and self.total >= max_total:
            raise errors.server_full()
        held = self.per_address.get(address, 0) if address is not None else 0
        if max_per_address and held >= max_per_address:
            raise errors.too_many_connections(max_per_address)
        if max_per_group and self.per_group[group] >= max_per_group:
            raise errors.room_full(max_per_group)
        self.total += 1
        self.per_group[group] += 1
        if address is not None:
            if not held and len(self.per_address) >= self.cap:
                # Past the cap the oldest address is forgotten: it may then open up to
                # max_per_address more, which takes `cap` addresses connected at once.
                self.per_address.popitem(last=False)
            self.per_address[address] = held + 1

    def release(self, group: str, address: str | None = None) -> None:
        """Forget one member of `group` from `address`; a group or an address with no
        connection left is dropped."""
        self.total -= 1
        self.per_group[group] -= 1
        if self.per_group[group] <= 0:
            del self.per_group[group]
        held = self.per_address.get(address) if address is not None else None
        if held is None:  # no address, or forgotten past the cap
            return
        if held <= 1:
            del self.per_address[address]
        else:
            self.per_address[address] = held - 1

    @property
    def rooms(self) -> int:
        """Rooms with at least one member connected to this process."""
        return len(self.per_group)


connections = ConnectionCounter()
joins = JoinBudget()
posts = JoinBudget(refuse=errors.posts_rate_limited)  # per user id (rooms.web.posting)
