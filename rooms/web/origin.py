"""Origin checking for WebSocket handshakes.

Browsers always send Origin, and it must name one of ALLOWED_HOSTS: that stops other
sites' pages from opening sockets with a visitor's cookies. Clients that are not browsers
(command-line tools, bots, load generators) send no Origin and carry no ambient
credentials, so a missing Origin is let through, where Channels' validator refuses it.
"""

from urllib.parse import urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """OriginValidator that also admits handshakes without an Origin header, called as a
    plain function returning the next application's coroutine (rooms.routing says why)."""

    def __call__(self, scope: dict, receive, send):
        origin = None
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                try:
                    origin = urlparse(value.decode("latin1"))
                except UnicodeDecodeError:
                    pass
        if self.valid_origin(origin):
            return self.application(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)


def allowed_hosts_origin_validator(application):
    """Like Channels' AllowedHostsOriginValidator, admitting Origin-less clients."""
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)
