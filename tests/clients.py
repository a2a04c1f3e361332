"""A thin real WebSocket client for the live tests."""

import asyncio
import base64
import inspect
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 10.0


def chat_path(room: str, nickname: str | None = None, **query: str) -> str:
    params = dict(query)
    if nickname is not None:
        params["nickname"] = nickname
    qs = "&".join(f"{key}={quote(value)}" for key, value in params.items())
    return f"/ws/chat/{quote(room, safe='')}/" + (f"?{qs}" if qs else "")


async def join(server, room: str, nickname: str | None, **query: str) -> ClientConnection:
    return await connect(server.url(chat_path(room, nickname, **query)), open_timeout=TIMEOUT)


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> str:
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_json(ws: ClientConnection, timeout: float = TIMEOUT) -> dict:
    return orjson.loads(await recv(ws, timeout))


async def recv_n(ws: ClientConnection, n: int, timeout: float = TIMEOUT) -> list[str]:
    return [await recv(ws, timeout) for _ in range(n)]


async def recv_until(ws: ClientConnection, line: str, timeout: float = TIMEOUT) -> list[str]:
    """Every line received up to and including `line`."""
    lines = [await recv(ws, timeout)]
    while lines[-1] != line:
        lines.append(await recv(ws, timeout))
    return lines


async def wait_until(
    probe: Callable[[], Any],
    done: Callable[[Any], bool],
    timeout: float = TIMEOUT,
    interval: float = 0.05,
) -> Any:
    """Call `probe` (sync or async) every `interval` s until `done` holds for its result, or
    `timeout` s pass; return its last result, for the test to assert on."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if done(result) or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(interval)


async def assert_silent(ws: ClientConnection, wait: float = 0.3) -> None:
    """Nothing arrives within `wait` seconds."""
    try:
        frame = await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame {frame!r}")


def raw_join(port: int, path: str, rcvbuf: int | None = None) -> socket.socket:
    """A WebSocket handshake over a plain socket, which then reads only when told to."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = read_head(sock)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def read_head(sock: socket.socket) -> bytes:
    """The server's response head, read a byte at a time so no frame after it is taken."""
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    return response


async def read_until_closed(ws: ClientConnection) -> tuple[int | None, list[str]]:
    """Read until the server closes; the close code and the frames read before it."""
    frames = []
    try:
        while True:
            frames.append(await recv(ws))
    except ConnectionClosed:
        return ws.close_code, frames


def get_json(server, path: str) -> tuple[int, dict]:
    """GET a JSON endpoint of a live server: status and body, error statuses included."""
    try:
        with urllib.request.urlopen(server.http(path), timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())
