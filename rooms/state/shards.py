"""Which Redis shard owns a room: a jump consistent hash (Lamping and Veach, 2014) of its
group name over the shards listed in REDIS_URL.

Everything of a room lives on its shard (id counter, recent cache, members, the pub/sub
channel its events travel by), so one script there orders the room. Going from N to N+1
shards moves only the rooms that must move, about 1/(N+1) of them, all to the new shard.
Pure: no I/O, no settings.
"""

import hashlib

_MASK = (1 << 64) - 1
_JUMP = 2862933555777941757  # the paper's 64-bit linear congruential multiplier


def jump_hash(key: int, buckets: int) -> int:
    """The bucket in [0, buckets) of a 64-bit `key`."""
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * _JUMP + 1) & _MASK
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def shard_of(name: str, shards: int) -> int:
    """The shard in [0, shards) owning `name` (a room's group, a user's key, a channel)."""
    if shards == 1:
        return 0
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "big"), shards)


def tagged(group: str) -> str:
    """`group` as a Redis Cluster hash tag: every key and channel of a room names it so, and
    they all share the room's slot."""
    return f"{{{group}}}"


def untagged(name: str) -> str:
    """The group in a `tagged` name."""
    return name[1:-1] if name.startswith("{") and name.endswith("}") else name
