"""A rooms-dialect server that dies the moment a chat message of ladder step --die-at-step
reaches it, dropping every client at once: the C++ seed's way with a mass disconnect, for
the benchmark's tests.

    python -m tests.drop_server --port PORT --die-at-step 2
"""

import argparse
import os

import uvloop
from picows import WSFrame, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from bench import wire
from bench.fanout_server import Member, route


class Doomed(Member):
    """A member whose server exits on the first message of step `die_at`."""

    die_at = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Exit at once on a message of the fatal step; otherwise relay as usual."""
        if frame.msg_type == WSMsgType.TEXT:
            stamp = wire.parse_stamp(frame.get_payload_as_bytes())
            if stamp is not None and stamp[0] == self.die_at:
                os._exit(1)
        super().on_ws_frame(transport, frame)


async def serve(port: int) -> None:
    """Serve until a fatal message arrives."""
    rooms: dict[str, set[WSTransport]] = {}

    def listener(request: WSUpgradeRequest) -> Doomed | None:
        member = route(rooms, request)
        return member and Doomed(rooms, member.room, member.nick.decode())

    server = await ws_create_server(listener, "127.0.0.1", port)
    await server.serve_forever()


def main() -> None:
    """Parse --port and --die-at-step and run the server."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--die-at-step", type=int, required=True)
    args = parser.parse_args()
    Doomed.die_at = args.die_at_step
    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
