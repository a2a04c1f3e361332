"""Room events for servers without rooms.server.serve's write_soon (plain Daphne, runserver,
uvicorn): the layer's deliveries are gathered and sent from a task, in order with every
other message the consumer sends."""

import asyncio
from collections.abc import Awaitable, Callable

Send = Callable[[dict], Awaitable[None]]


class Outbox:
    """An ASGI send, and a write_soon for room events that never waits."""

    @classmethod
    def over(cls, send: Send) -> tuple[Send, Callable[[str], None]]:
        """The send and the write_soon a consumer uses over the ASGI `send`."""
        outbox = cls(send)
        return outbox.send, outbox.write_soon

    def __init__(self, send: Send) -> None:
        self._send = send
        self._texts: list[str] = []
        self._lock = asyncio.Lock()  # one writer at a time keeps the order
        self._closed = False

    def write_soon(self, text: str) -> None:
        """Queue a text message for the client; a task sends it after what came before."""
        if self._closed:
            return
        self._texts.append(text)
        if len(self._texts) == 1:
            asyncio.ensure_future(self._flush())

    async def send(self, message: dict) -> None:
        """Send `message` once the texts queued before it are sent."""
        async with self._lock:
            await self._drain()
            if message["type"] == "websocket.close":
                # Sending on a closing socket raises (autobahn); nothing more goes out.
                self._closed = True
                self._texts.clear()
            await self._send(message)

    async def _flush(self) -> None:
        async with self._lock:
            await self._drain()

    async def _drain(self) -> None:
        while self._texts:
            texts, self._texts = self._texts, []
            for text in texts:
                await self._send({"type": "websocket.send", "text": text})
