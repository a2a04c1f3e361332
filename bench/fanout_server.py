"""Minimal picows/uvloop server speaking the rooms dialect, to show the generator's headroom."""

import argparse
import logging
from urllib.parse import parse_qs, urlsplit

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

log = logging.getLogger(__name__)


class Member(WSListener):
    """One connection: joins its room on connect, fans every text frame out to the room."""

    def __init__(self, rooms: dict[str, set[WSTransport]], room: str, nick: str) -> None:
        super().__init__()
        self.rooms = rooms
        self.room = room
        self.nick = nick.encode()
        self.prefix = self.nick + b": "

    def _broadcast(self, text: bytes) -> None:
        for peer in self.rooms.get(self.room, ()):
            peer.send(WSMsgType.TEXT, text)

    def on_ws_connected(self, transport: WSTransport) -> None:
        """Add to the room and announce the join to everyone, joiner included."""
        self.rooms.setdefault(self.room, set()).add(transport)
        self._broadcast(self.nick + b" joined " + self.room.encode())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Relay text as '{nick}: {text}' and answer close frames."""
        if frame.msg_type == WSMsgType.TEXT:
            self._broadcast(self.prefix + frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """Leave the room and tell the others."""
        members = self.rooms.get(self.room)
        if members is None:
            return
        members.discard(transport)
        if members:
            self._broadcast(self.nick + b" left the room")
        else:
            del self.rooms[self.room]


def route(rooms: dict[str, set[WSTransport]], request: WSUpgradeRequest) -> Member | None:
    """Accept /ws/chat/{room}/?nickname=...; anything else gets a 404."""
    url = urlsplit(request.path.decode())
    parts = url.path.strip("/").split("/")
    if len(parts) != 3 or parts[:2] != ["ws", "chat"] or not parts[2]:
        return None
    nick = parse_qs(url.query).get("nickname", ["anon"])[0]
    return Member(rooms, parts[2], nick)


async def serve(port: int) -> None:
    """Serve until killed."""
    rooms: dict[str, set[WSTransport]] = {}
    server = await ws_create_server(lambda request: route(rooms, request), "127.0.0.1", port)
    log.info("fanout server on 127.0.0.1:%d", port)
    await server.serve_forever()


def main() -> None:
    """Parse --port and run the server."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
