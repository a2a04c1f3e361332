"""One WebSocket connection under uvicorn, framed by picows, speaking ASGI to the application.

uvicorn's HTTP protocol parses the request head and, for an upgrade, hands the connection
over (rooms.server.http). The application instance starts at once with `websocket.connect`;
on its `websocket.accept` a picows protocol takes over the socket, answers 101 and from
then on parses and unmasks frames in C and calls `on_ws_frame`. A refusal before accepting
is a 403, as under Daphne.

What each connection keeps is this object (slots only), picows' protocol and transport,
uvloop's transport and the application instance: no task, timer or logger of its own.
Pings, the handshake deadline and CLOSE_TIMEOUT are kept by one sweep for all
connections (rooms.server.deadlines).

Room events skip the ASGI send: `write_soon(text)` (the extension
rooms.chat.extensions.WRITE_SOON) queues a text; every text queued in one event-loop turn
goes to its client in one write of frames built once per message (rooms.server.wire).
A client whose unsent bytes pass SEND_BUFFER_LIMIT is closed with 4509 SLOW_CONSUMER.

Reading stops while the application has rooms.core.queues.INPUT_HIGH messages of a client
waiting, and resumes once it has taken them.
"""

import asyncio
import logging
import time
from urllib.parse import unquote

import httptools
from picows import WSCloseCode, WSListener, WSMsgType

from rooms.chat.extensions import WRITE_SOON
from rooms.core import errors, logs, metrics
from rooms.core.queues import InputQueue
from rooms.server import deadlines, messages, wire
from rooms.server.handover import hand_over, valid_key
from rooms.server.wire import shared_text_frame

logger = logging.getLogger(__name__)

ASGI = {"version": "3.0", "spec_version": "2.3"}
CLOSE_WAIT = 1.0  # seconds for the client's reply to our close frame before dropping TCP
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
FAILED = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)
CONNECTING, OPEN, CLOSING, CLOSED = deadlines.CONNECTING, deadlines.OPEN, 2, deadlines.CLOSED

_addresses: dict[tuple, tuple] = {}  # one (host, port) tuple per listening address


class Limits:
    """What the launcher configures once for every connection."""

    max_frame = 64 * 1024
    send_buffer = 512 * 1024


class WebSocket(WSListener):
    """uvicorn's WebSocket protocol (connection_made, data_received, shutdown) until the
    application accepts; picows' listener afterwards."""

    __slots__ = (
        "app",
        "server_state",
        "root_path",
        "transport",
        "ws",
        "early",
        "state",
        "queue",
        "task",
        "corked",
        "parts",
        "close_code",
        "seen",
        "since",
        "pinged",
        "_headers",
        "_accept",
    )

    def __init__(self, config, server_state, app_state) -> None:
        self.app = config.loaded_app
        self.server_state = server_state
        self.root_path = config.root_path
        self.transport = None
        self.ws = None
        self.early = b""  # bytes after the request head, before the application accepts
        self.state = CONNECTING
        self.queue = None  # the client's messages (rooms.core.queues.InputQueue), once connected
        self.task = None
        self.corked = None
        self.parts = None  # the fragments of a message begun (rooms.server.messages)
        self.close_code = None
        self.seen = True
        self.since = 0.0
        self.pinged = 0.0
        self._headers: list = []
        self._accept = None

    # -- the handshake, before the application accepts --------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.queue = InputQueue(transport.pause_reading, transport.resume_reading)
        self.server_state.connections.add(self)
        deadlines.track(self)

    def data_received(self, data: bytes) -> None:
        # Bytes behind the request head, before the application accepts: picows reads them.
        self.early += data
        if len(self.early) > Limits.max_frame:
            self.abort()

    def start(self, request, early: bytes) -> None:
        """Check the handshake `request` (rooms.server.http, its head parsed), build the
        scope and start the application."""
        self.early = early
        subprotocols = []
        key = version = None
        headers = request.headers
        for name, value in headers:
            if name == b"sec-websocket-protocol":
                subprotocols += [p.strip() for p in value.decode("latin-1").split(",")]
            elif name == b"sec-websocket-key":
                key = value
            elif name == b"sec-websocket-version":
                version = value
        url = httptools.parse_url(request.url)
        if version != b"13" or not valid_key(key) or not url.path.isascii():
            self.refuse(BAD_REQUEST)
            return
        self._accept = key
        server = request.server
        scope = {
            "type": "websocket",
            "asgi": ASGI,
            "http_version": request.parser.get_http_version(),
            "scheme": "wss" if request.scheme == "https" else "ws",
            "server": _addresses.setdefault(server, server),
            "client": request.client,
            "root_path": self.root_path,
            "path": unquote(url.path.decode("ascii")),
            "raw_path": url.path,
            "query_string": url.query or b"",
            "headers": headers,
            "subprotocols": subprotocols,
            "state": {},
            "extensions": {WRITE_SOON: {"write": self.write_soon}},
        }
        self._headers = headers
        self.queue.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.ensure_future(self.run(scope))

    async def run(self, scope: dict) -> None:
        """The application instance; uvicorn's shutdown waits for it."""
        tasks = self.server_state.tasks
        task = asyncio.current_task()
        tasks.add(task)
        try:
            await self.app(scope, self.queue.get, self.send)
        except Exception:
            logger.exception("application failed on %s", scope["path"])
            self.refuse(FAILED)
            self.close(WSCloseCode.INTERNAL_ERROR, "")
        finally:
            tasks.discard(task)
            self.task = None
            self.refuse(FORBIDDEN)  # ended without accepting
            self.close(1000, "")
            if self.state == CLOSED:
                deadlines.forget(self)

    def refuse(self, response: bytes) -> None:
        """Answer a handshake not accepted with an HTTP error, and close."""
        if self.state == CONNECTING:
            self.state = CLOSING
            self.transport.write(response)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        # Before the application accepted (picows' protocol reports it afterwards).
        self.lost()

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        if self.state == OPEN:
            self.slow()

    def resume_writing(self) -> None:
        pass

    # -- the application's send --------------------------------------------------------

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self.state != OPEN:
                return
            self.uncork()  # texts queued before this one go first
            text = message.get("text")
            if text is not None:
                self.ws.underlying_transport.write(shared_text_frame(text))
            else:
                self.ws.send(WSMsgType.BINARY, message["bytes"])
        elif kind == "websocket.accept":
            if self.state == CONNECTING:
                self.accept(message.get("subprotocol"), message.get("headers") or ())
        elif kind == "websocket.close":
            self.refuse(FORBIDDEN)
            self.close(message.get("code", 1000), message.get("reason") or "")
        else:
            raise ValueError(f"unexpected ASGI message {kind!r} on a WebSocket")

    def accept(self, subprotocol: str | None, extra: list) -> None:
        """Hand the socket to picows, which answers 101 with `subprotocol` and `extra`."""
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in extra}
        if subprotocol:
            headers["Sec-WebSocket-Protocol"] = subprotocol
        key, early, self._accept, self.early = self._accept, self.early, None, b""
        hand_over(self.transport, self, key, early, headers, Limits.max_frame)

    # -- picows' side, once open -------------------------------------------------------

    def on_ws_connected(self, transport) -> None:
        self.ws = transport
        self.state = OPEN
        # Read only before the handshake is answered (the origin, the session cookie); the
        # application's scope holds this very list. picows keeps the request and response
        # of the handshake for the connection's life, and reads neither again.
        self._headers.clear()
        transport.request.headers = transport.response.headers = None
        transport.underlying_transport.set_write_buffer_limits(high=Limits.send_buffer)

    def on_ws_frame(self, transport, frame) -> None:
        self.seen = True
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code()
            if self.state == OPEN:  # the client's close: answer it with its code
                self.uncork()
                self.state = CLOSING
                transport.send_close(self.close_code)
            transport.disconnect()
        elif kind in DATA and self.state == OPEN:
            rsv = frame.rsv1 or frame.rsv2 or frame.rsv3
            payload = frame.get_payload_as_bytes()
            try:
                self.parts, message = messages.take(
                    self.parts, kind, frame.fin, rsv, payload, Limits.max_frame
                )
            except messages.Fault as fault:
                self.parts = None
                self.close(fault.code, fault.reason)
                return
            if message is not None:
                self.queue.put_nowait(message)

    def on_ws_disconnected(self, transport) -> None:
        self.lost()

    def lost(self) -> None:
        """The client is gone: tell the application (the deadlines sweep cancels it CLOSE_TIMEOUT
        later if it still runs)."""
        self.server_state.connections.discard(self)
        self.corked = None
        if self.state == CLOSED:
            return
        self.state = CLOSED
        code = self.close_code if self.close_code is not None else 1006
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code})
        self.since = time.monotonic()
        if self.task is None:
            deadlines.forget(self)

    def cancel(self) -> None:
        """Stop an application that outlived its client by CLOSE_TIMEOUT."""
        if self.task is not None:
            self.task.cancel()

    # -- writing and closing -----------------------------------------------------------

    def write_soon(self, text: str) -> None:
        """Send `text` at the end of this event-loop turn, with the others queued in it."""
        if self.corked is not None or self.state == OPEN:
            wire.write_soon(self, text)

    def uncork(self) -> None:
        """Write the texts queued by write_soon, in one write."""
        texts, self.corked = self.corked, None
        if texts and self.state == OPEN:
            self.ws.underlying_transport.write(b"".join([shared_text_frame(t) for t in texts]))

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; drop the connection if no reply comes within CLOSE_WAIT."""
        if self.state != OPEN:
            return
        self.uncork()
        self.state = CLOSING
        self.ws.send_close(code, reason.encode())
        asyncio.get_running_loop().call_later(CLOSE_WAIT, self.abort)

    def abort(self) -> None:
        """Drop TCP at once."""
        if self.state == CLOSED:
            return
        if self.ws is not None:
            self.ws.disconnect(graceful=False)
        else:
            self.transport.abort()

    def slow(self) -> None:
        metrics.error(errors.SLOW_CONSUMER)
        client = logs.address(self.transport.get_extra_info("peername"))
        logger.warning(
            "slow consumer %s: over %d unsent bytes, closing",
            client,
            Limits.send_buffer,
            extra={"event": "slow_consumer", "client": client},
        )
        self.close(errors.WS_4509_SLOW_CONSUMER, errors.SLOW_CONSUMER)

    def ping(self) -> None:
        if self.state == OPEN:
            self.ws.send_ping()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: 1001 to an open client, a handshake dropped."""
        if self.state == OPEN:
            self.close(errors.WS_1001_GOING_AWAY, "server shutting down")
        elif self.state == CONNECTING:
            self.abort()
