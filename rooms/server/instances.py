"""Application instances cleaned up when they end, and cut off CLOSE_TIMEOUT after their
client left, without walking every connection.

Daphne's `application_checker` walks every connection each second to find instances that
ended (to log their exception and forget them) and clients gone for longer than the
application close timeout (to cancel their instance): at 83,000 connections, a tenth of
the server's CPU with nothing happening (BENCHMARKS.md, "Crowd"). Here an instance's end
is a done callback, and the clients that left wait in a queue in the order they left, which
with one timeout for all is the order their time runs out: each second looks only at those
whose time is up.
"""

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from functools import partial

logger = logging.getLogger(__name__)


class Instances:
    """Daphne's `connections` bookkeeping for application instances, driven by events."""

    def __init__(self, connections: dict, close_timeout: float, stop: Callable[[], None]) -> None:
        self.connections = connections  # Daphne's: protocol -> details
        self.close_timeout = close_timeout
        self.stop = stop  # the server's: an instance raising KeyboardInterrupt asks for it
        # (deadline, protocol): weakly, so that a closed connection whose application ended
        # is freed at once, not CLOSE_TIMEOUT later.
        self.leaving: deque[tuple[float, weakref.ref]] = deque()

    def started(self, protocol: object, instance: asyncio.Future) -> None:
        """Clean up after `instance`, `protocol`'s application, once it ends."""
        instance.add_done_callback(partial(self.ended, protocol))

    def ended(self, protocol: object, instance: asyncio.Future) -> None:
        details = self.connections.get(protocol)
        if details is None or details.get("application_instance") is not instance:
            return
        disconnected = "disconnected" in details
        exception = None if instance.cancelled() else instance.exception()
        if isinstance(exception, KeyboardInterrupt):
            self.stop()
        elif exception is not None:
            logger.error("Exception inside application: %s", exception, exc_info=exception)
            if not disconnected:
                protocol.handle_exception(exception)
        del details["application_instance"]
        if disconnected:
            del self.connections[protocol]

    def disconnected(self, protocol: object) -> None:
        """`protocol`'s client left: forget it now if its application is done, else give
        the application the close timeout to finish."""
        details = self.connections[protocol]
        if "application_instance" not in details:
            del self.connections[protocol]
        else:
            self.leaving.append((time.monotonic() + self.close_timeout, weakref.ref(protocol)))

    def tick(self) -> None:
        """Cancel the instances of clients gone for longer than the close timeout."""
        now = time.monotonic()
        while self.leaving and self.leaving[0][0] <= now:
            protocol = self.leaving.popleft()[1]()
            details = None if protocol is None else self.connections.get(protocol)
            instance = details and details.get("application_instance")
            if instance is not None and not instance.done():
                logger.warning(
                    "Application instance %r for connection %s took too long to shut down "
                    "and was killed.",
                    instance,
                    repr(protocol),
                )
                instance.cancel()
