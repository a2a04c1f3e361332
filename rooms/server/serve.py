"""The production launcher: Daphne, plus what an internet-facing chat server needs from it.

    python -m rooms.server.serve [any daphne option] chatproject.asgi:application

It takes Daphne's command line unchanged and adds (docs/operations.md):

- graceful shutdown on SIGTERM/SIGINT: stop listening, send every WebSocket client a
  close frame 1001 with a reason, let consumers announce leaves, run the app's shutdown
  hooks (rooms.core.shutdown: pending history written), and stop, all within
  SHUTDOWN_TIMEOUT. A second signal stops at once. Plain Daphne stops its reactor and
  clients see 1006;
- a bound on each client's unsent bytes (rooms.server.guard, SEND_BUFFER_LIMIT): a client
  that stops reading is closed with 4509 SLOW_CONSUMER instead of growing server memory;
- TLS endpoints (`-e ssl:...`) that complete their handshakes (rooms.server.patches);
- room events framed once per message and written once per loop turn (rooms.server.frames);
- handshakes parsed once, by autobahn (rooms.server.upgrades), and without its debug
  formatting (rooms.server.patches);
- idle connections kept alive without walking all of them every two seconds, and
  application instances cleaned up as they end (rooms.server.keepalive, .instances);
- the garbage collector tuned for many long-lived connections (GC_THRESHOLDS);
- a lighter input queue per connection (rooms.core.queues), and per-connection state kept
  small (rooms.server.connection);
- Daphne's timeouts and limits taken from settings (PING_INTERVAL, PING_TIMEOUT,
  HANDSHAKE_TIMEOUT, MAX_FRAME_BYTES); options given on the command line still win;
- a check, before anything starts, that the installed Daphne, autobahn and Twisted still
  have every name all this relies on (rooms.internals).
"""

# Daphne installs Twisted's asyncio reactor on import: it must come before Twisted.
from daphne.cli import CommandLineInterface  # isort: skip
from daphne.server import Server  # isort: skip

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from functools import partial
from types import MappingProxyType

from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings
from twisted.internet import reactor

from rooms import internals
from rooms.chat.extensions import WRITE_SOON
from rooms.core import errors, shutdown
from rooms.core.queues import InputQueue, SingleReaderQueue
from rooms.server import keepalive, patches, upgrades
from rooms.server.connection import RoomsProtocol
from rooms.server.guard import guard
from rooms.server.instances import Instances

logger = logging.getLogger(__name__)

GOING_AWAY_REASON = "server shutting down"
ASGI_VERSION = MappingProxyType({"version": "3.0"})  # one read-only copy, not a dict per scope
POLL_INTERVAL = 0.05  # seconds between checks while draining connections
# Young collections every 7,000 allocations instead of 700, and a full one after 100 of
# the middle generation instead of 10 (it also waits, as always, until a quarter of the
# old generation is new). Each connection holds a few hundred objects that live as long
# as it does: with the defaults, a full collection walks every one of them again and
# again, the largest cost while thousands of clients connect (BENCHMARKS.md, "Collector").
# Rare full collections are harmless only while a closed connection leaves no reference
# cycles (RoomsProtocol.connectionLost, RoomsServer.protocol_disconnected): with
# them, connection churn grew the server by hundreds of MB.
GC_THRESHOLDS = (7_000, 10, 100)


class RoomsServer(Server):
    """Daphne's Server with graceful shutdown and a per-client send buffer limit."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.signal_handlers = False  # ours go on the asyncio loop, see install_signals
        self.ports: list = []
        self.stopping = False

    def run(self) -> None:
        reactor.callWhenRunning(self.started)
        super().run()

    def started(self) -> None:
        # What start-up loaded (Django, the app, the libraries) stays for good: take it out
        # of the collector's sight, then collect less often (GC_THRESHOLDS).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        patches.quiet_autobahn()
        # Twisted's HTTP channel waits 60 s between bytes of a request head by default:
        # bound it like the WebSocket handshake, against slowloris clients.
        self.http_factory.timeOut = settings.ROOMS_HANDSHAKE_TIMEOUT
        self.http_factory.protocol = upgrades.channel
        self.http_factory.__class__ = patches.HTTPFactoryWithoutALPN  # before any TLS connection
        # On a protocol violation autobahn drops TCP by default, so clients only see 1006;
        # send the close frame with its code (1002, 1007, 1009) first.
        self.ws_factory.setProtocolOptions(failByDrop=False)
        self.ws_factory.protocol = RoomsProtocol.for_factory(self.ws_factory)
        self.keepalive = keepalive.Keepalive(
            self.ping_interval, self.ping_timeout, self.websocket_timeout
        )
        self.instances = Instances(self.connections, self.application_close_timeout, self.stop)
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.on_signal, signum)

    def create_application(self, protocol, scope: dict) -> SingleReaderQueue | None:
        # Daphne's, with a SingleReaderQueue (for WebSockets an InputQueue) and, for
        # WebSockets, the write_soon extension.
        if isinstance(protocol, RoomsProtocol):  # Daphne's WebSocket scopes carry no extensions
            scope["extensions"] = {WRITE_SOON: {"write": protocol.write_soon}}
        details = self.connections.get(protocol)
        if details is None:
            return None
        if isinstance(protocol, RoomsProtocol):  # reading paused while its application lags
            transport = protocol.transport
            queue = InputQueue(transport.pauseProducing, transport.resumeProducing)
        else:
            queue = SingleReaderQueue()
        scope.setdefault("asgi", ASGI_VERSION)
        instance = self.application(
            scope=scope, receive=queue.get, send=partial(self.handle_reply, protocol)
        )
        details["application_instance"] = future = asyncio.ensure_future(instance)
        self.instances.started(protocol, future)
        return queue

    def application_checker(self) -> None:
        # Replaces Daphne's walk over every connection each second (rooms.server.instances).
        self.instances.tick()
        reactor.callLater(1, self.application_checker)

    def timeout_checker(self) -> None:
        # Replaces Daphne's walk over every connection every 2 s (rooms.server.keepalive).
        self.keepalive.tick()
        reactor.callLater(keepalive.TICK, self.timeout_checker)

    def log_action(self, protocol: str, action: str, details: dict) -> None:
        # rooms.chat.consumers logs each join and leave with its room, nickname, client and close
        # code: Daphne's three access-log lines per WebSocket would repeat them, at a
        # twentieth of a handshake's CPU. Refused handshakes and HTTP requests stay.
        if protocol == "websocket" and action in ("connecting", "connected", "disconnected"):
            return
        super().log_action(protocol, action, details)

    def listen_success(self, port) -> None:
        self.ports.append(port)
        super().listen_success(port)

    async def handle_reply(self, protocol, message: dict) -> None:
        # Daphne's, plus: nothing is sent on a WebSocket that is closing (slow consumer,
        # shutdown), where autobahn raises and the consumer would die before its leave.
        details = self.connections.get(protocol)
        if details is None or "disconnected" in details:
            return
        if message["type"] == "websocket.send":
            if protocol.state == AutobahnProtocol.STATE_OPEN:
                protocol.handle_reply(message)
            return
        await super().handle_reply(protocol, message)

    def protocol_disconnected(self, protocol) -> None:
        details = self.connections.get(protocol)
        if details is None or "disconnected" in details:  # told before (Daphne may repeat it)
            return
        super().protocol_disconnected(protocol)
        self.keepalive.disconnected(protocol)
        self.instances.disconnected(protocol)
        # An HTTP request upgraded to a WebSocket is never finished, so its channel keeps
        # it in `requests` while it points back at the channel: a cycle that only the
        # collector frees. Daphne has just let go of both (it set request.transport None).
        channel = getattr(protocol, "channel", None)
        if protocol.transport is None and channel is not None and protocol in channel.requests:
            channel.requests.remove(protocol)

    def protocol_connected(self, protocol) -> None:
        super().protocol_connected(protocol)
        self.keepalive.connected(protocol)
        limit = settings.ROOMS_SEND_BUFFER_LIMIT
        if limit and isinstance(protocol, WebSocketProtocol):
            guard(protocol, limit)

    def on_signal(self, signum: int) -> None:
        if self.stopping:
            logger.warning("second %s: stopping now", signal.Signals(signum).name)
            reactor.stop()
            return
        self.stopping = True
        logger.info("%s: shutting down", signal.Signals(signum).name)
        asyncio.ensure_future(self.shutdown(settings.ROOMS_SHUTDOWN_TIMEOUT))

    async def shutdown(self, timeout: float) -> None:
        """Stop listening, close every client with 1001, run the shutdown hooks, stop."""
        start = time.monotonic()
        try:
            for port in self.ports:
                port.stopListening()
            # Half the budget for clients to close and consumers to announce their leaves;
            # the rest, at least, for the shutdown hooks (rooms.apps: history written).
            drain_until = start + timeout / 2
            while self.close_websockets() and time.monotonic() < drain_until:  # noqa: ASYNC110
                await asyncio.sleep(POLL_INTERVAL)
            left = self.close_websockets()
            logger.info(
                "connections drained in %.2f s, %d still open",
                time.monotonic() - start,
                left,
            )
            await shutdown.run(max(timeout - (time.monotonic() - start), 0.1))
        finally:
            logger.info("stopped in %.2f s", time.monotonic() - start)
            reactor.stop()

    def close_websockets(self) -> int:
        """Send 1001 to every open WebSocket; count those whose consumer is still running."""
        running = 0
        for protocol, details in list(self.connections.items()):
            if not isinstance(protocol, WebSocketProtocol):
                continue
            if protocol.state == AutobahnProtocol.STATE_OPEN:
                # autobahn's sendClose refuses 1001 (it allows 1000 and 3000-4999 only);
                # sendCloseFrame sends it and starts the same close handshake timeout.
                protocol.sendCloseFrame(
                    code=errors.WS_1001_GOING_AWAY, reasonUtf8=GOING_AWAY_REASON.encode()
                )
            elif protocol.state == AutobahnProtocol.STATE_CONNECTING:
                protocol.dropConnection(abort=True)
            instance = details.get("application_instance")
            if instance is not None and not instance.done():
                running += 1
        return running


class RoomsCommandLine(CommandLineInterface):
    """Daphne's command line, serving with RoomsServer."""

    server_class = RoomsServer


def settings_arguments() -> list[str]:
    """Daphne options from settings, placed first so that explicit options override them."""
    frame = str(settings.ROOMS_MAX_FRAME_BYTES)
    return [
        f"--ping-interval={settings.ROOMS_PING_INTERVAL}",
        f"--ping-timeout={settings.ROOMS_PING_TIMEOUT}",
        f"--websocket_connect_timeout={settings.ROOMS_HANDSHAKE_TIMEOUT}",
        f"--websocket-max-message-size={frame}",
        f"--websocket-max-frame-size={frame}",
        f"--application-close-timeout={settings.ROOMS_CLOSE_TIMEOUT}",
    ]


def main(argv: list[str]) -> None:
    """Serve like `daphne`, with the additions above; refuse to start on library versions
    that lack what they rely on."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    internals.require("daphne", "autobahn", "twisted")
    RoomsCommandLine().run(settings_arguments() + argv)


if __name__ == "__main__":
    main(sys.argv[1:])
