"""Where room state lives, decided here once: in this process's memory, or in Redis when
REDIS_URL is set (ids and recent caches, presence), shared by every process; and the
history writer. One instance of each per process."""

from functools import cache

from channels.layers import get_channel_layer
from django.conf import settings

from rooms.state.presence import InProcessPresence
from rooms.state.redis_presence import RedisPresence
from rooms.state.redis_sequence import RedisSequence
from rooms.state.sequence import InProcessSequence
from rooms.state.users import InProcessUsers, RedisUsers
from rooms.state.writer import HistoryWriter


def in_redis() -> bool:
    """Whether room state is kept in Redis, shared by every process."""
    return bool(settings.REDIS_URL)


@cache
def get_writer() -> HistoryWriter:
    """This process's history writer."""
    return HistoryWriter(
        settings.ROOMS_FLUSH_INTERVAL,
        settings.ROOMS_FLUSH_BATCH,
        settings.ROOMS_HISTORY_PENDING_MAX,
        settings.ROOMS_HISTORY_PENDING_BYTES,
    )


@cache
def get_sequence() -> InProcessSequence | RedisSequence:
    """This process's message ids and recent caches."""
    pending = get_writer().highest_pending
    sweep = settings.ROOMS_FLUSH_INTERVAL
    if not in_redis():
        return InProcessSequence(
            settings.ROOMS_HISTORY_MAX, settings.ROOMS_RECENT_CACHE_BYTES, pending, sweep
        )
    sequence = RedisSequence(
        settings.REDIS_PREFIX,
        settings.ROOMS_HISTORY_MAX,
        settings.ROOMS_RECENT_CACHE_BYTES,
        settings.ROOMS_ROOM_KEY_TTL,
        publishes=settings.CHANNEL_LAYER == "redis-pubsub",
        pending=pending,
        sweep=sweep,
    )
    if sequence.publishes:
        get_channel_layer().observer = sequence.observe
    return sequence


@cache
def get_presence() -> InProcessPresence | RedisPresence:
    """Who is in which room, for this process."""
    if in_redis():
        return RedisPresence(settings.REDIS_PREFIX, settings.ROOMS_PRESENCE_TTL)
    return InProcessPresence()


@cache
def get_users() -> InProcessUsers | RedisUsers:
    """Connections per signed-in user (MAX_CONNECTIONS_PER_USER)."""
    if in_redis():
        return RedisUsers(settings.REDIS_PREFIX, settings.ROOMS_PRESENCE_TTL)
    return InProcessUsers()
