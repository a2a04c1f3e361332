"""The fast launcher: uvicorn on uvloop for HTTP, picows for WebSockets.

    python -m rooms.server.fast [-b HOST] [-p PORT | --fd FD] chatproject.asgi:application

The same application and the same guarantees as rooms.server.serve (Daphne), on a server
core whose hot paths are C: uvloop's event loop and transports, httptools' request parser,
picows' frame parser and unmasking (rooms.server.websocket). It keeps:

- graceful shutdown on SIGTERM/SIGINT: stop listening, close every WebSocket with 1001,
  let consumers announce their leaves (half of SHUTDOWN_TIMEOUT), run the shutdown hooks
  (rooms.core.shutdown: pending history written), stop. A second signal stops at once;
- SEND_BUFFER_LIMIT (4509 SLOW_CONSUMER), PING_INTERVAL/PING_TIMEOUT and
  HANDSHAKE_TIMEOUT (rooms.server.deadlines), MAX_FRAME_BYTES (1009), CLOSE_TIMEOUT;
- room events framed once per message and written once per loop turn;
- the collector tuned for many long-lived connections (rooms.server.serve.GC_THRESHOLDS);
- a check, before anything starts, that the installed uvicorn and picows still have every
  name all this relies on (rooms.internals).
"""

import argparse
import contextlib
import gc
import logging
import os
import socket
import sys
import time

import uvicorn

logger = logging.getLogger(__name__)


class RoomsUvicorn(uvicorn.Server):
    """uvicorn's server, with the collector tuned, the keepalive sweep, and the shutdown
    hooks after the connections have drained."""

    @contextlib.contextmanager
    def capture_signals(self):
        # uvicorn raises a caught SIGTERM again once it has shut down, so the process ends
        # killed by it (status -15); a graceful shutdown here exits 0, as under Daphne.
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()

    async def startup(self, sockets=None) -> None:
        from django.conf import settings

        from rooms.server import deadlines
        from rooms.server.serve import GC_THRESHOLDS

        await super().startup(sockets)
        logging.getLogger("picows").setLevel(logging.WARNING)  # a line per connection at INFO
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        deadlines.start(
            settings.ROOMS_PING_INTERVAL,
            settings.ROOMS_PING_TIMEOUT,
            settings.ROOMS_HANDSHAKE_TIMEOUT,
            settings.ROOMS_CLOSE_TIMEOUT,
        )

    async def shutdown(self, sockets=None) -> None:
        from django.conf import settings

        from rooms.core import shutdown

        start = time.monotonic()
        timeout = settings.ROOMS_SHUTDOWN_TIMEOUT
        try:
            await super().shutdown(sockets)
            logger.info(
                "connections drained in %.2f s, %d still open",
                time.monotonic() - start,
                len(self.server_state.connections),
            )
            await shutdown.run(max(timeout - (time.monotonic() - start), 0.1))
        finally:
            logger.info("stopped in %.2f s", time.monotonic() - start)


def config(args: argparse.Namespace) -> uvicorn.Config:
    """uvicorn's configuration for `args`, limits from settings."""
    from django.conf import settings

    from rooms.server.http import HttpProtocol
    from rooms.server.websocket import Limits, WebSocket

    Limits.max_frame = settings.ROOMS_MAX_FRAME_BYTES
    Limits.send_buffer = settings.ROOMS_SEND_BUFFER_LIMIT or 1 << 62
    return uvicorn.Config(
        args.application,
        host=args.bind,
        port=args.port,
        loop="uvloop",
        http=HttpProtocol,
        ws=WebSocket,
        lifespan="off",
        interface="asgi3",
        # Daphne's --proxy-headers: the client is the first X-Forwarded-For address
        # (docs/operations.md); off, the address of the connection.
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips="*",
        backlog=args.backlog,
        timeout_graceful_shutdown=settings.ROOMS_SHUTDOWN_TIMEOUT / 2,
        server_header=False,
        date_header=False,
        log_config=None,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rooms.server.fast", description=__doc__)
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    parser.add_argument("--fd", type=int, default=None, help="serve a listening socket")
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument(
        "--proxy-headers", action="store_true", help="client address from X-Forwarded-For"
    )
    parser.add_argument("application", help="module:attribute of the ASGI application")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    import django

    from rooms import internals

    django.setup()
    internals.require("uvicorn", "picows")
    args = parse_args(argv)
    # uvicorn's own fd option takes any descriptor for a UNIX socket; this one is TCP.
    sockets = [socket.socket(fileno=args.fd)] if args.fd is not None else None
    RoomsUvicorn(config(args)).run(sockets=sockets)


if __name__ == "__main__":
    main(sys.argv[1:])
