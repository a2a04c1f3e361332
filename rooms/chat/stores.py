"""The stores under the chat (Redis, the database) as the chat layer uses them: their
failures mapped to client errors in one place, and the one path of a chat message into a
room, a client's (rooms.chat.membership) and the project's own (rooms.chat.publish) alike.
"""

import asyncio
import logging
from collections.abc import Awaitable
from functools import partial

from django.db import DatabaseError

from rooms.core import errors, metrics
from rooms.core.events import room_event
from rooms.layers.fanout import FANOUT
from rooms.state.backends import get_sequence, get_writer
from rooms.state.clients import BACKEND_ERRORS
from rooms.state.sequence import Stamp

logger = logging.getLogger(__name__)


class StoreErrors:
    """A context manager turning the stores failing underneath (Redis unreachable, the
    database down) into SERVICE_UNAVAILABLE: fatal for a join, not for a message (it was not
    delivered; the session goes on). Two instances serve every use (REFUSE_JOIN,
    REFUSE_MESSAGE)."""

    __slots__ = ("fatal",)

    def __init__(self, fatal: bool) -> None:
        self.fatal = fatal

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, traceback) -> bool:
        if kind is not None and issubclass(kind, STORE_ERRORS):
            what = "join refused" if self.fatal else "message not delivered"
            logger.warning("channel layer or presence unavailable: %s", what, exc_info=error)
            raise errors.service_unavailable(self.fatal) from error
        return False


REFUSE_JOIN, REFUSE_MESSAGE = StoreErrors(fatal=True), StoreErrors(fatal=False)
STORE_ERRORS = (*BACKEND_ERRORS, DatabaseError)


async def publish(layer, group: str, room: str, nickname: str, text: str) -> Stamp:
    """Publish a chat message to the room: its id, the recent cache, every member. Refused
    (SERVICE_UNAVAILABLE) while history can keep no more or the stores fail; the caller has
    it written to history. Clients' messages and the server's own (rooms.chat.publish)."""
    with REFUSE_MESSAGE:
        if FANOUT in layer.extensions and layer.deaf_to(group):
            raise ConnectionError("channel layer subscriptions are being restored")
        if get_writer().full:  # history can keep no more: refuse, never accept and drop
            metrics.history_refused()
            raise errors.service_unavailable(fatal=False)
        stamp = await get_sequence().publish(layer, group, room, nickname, text, room_event())
    metrics.received()
    return stamp


async def run_each(steps: list[partial[Awaitable[None]]]) -> None:
    """Await every step in order, also after one failed or was cancelled: a failure is
    logged, a cancellation re-raised once all have run (a leave must undo everything)."""
    cancelled: asyncio.CancelledError | None = None
    for step in steps:
        try:
            await step()
        except asyncio.CancelledError as error:
            cancelled = error  # the other steps first
        except BACKEND_ERRORS:
            name = step.func.__name__
            logger.warning("store unavailable: %s skipped on leaving", name, exc_info=True)
        except Exception:
            logger.exception("leaving: %s failed", step.func.__name__)
    if cancelled is not None:
        raise cancelled
