"""ASGI entry point: Django for HTTP, room consumers for WebSockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

from rooms.access.identity import IdentityMiddleware  # noqa: E402
from rooms.chat.publish import serving  # noqa: E402
from rooms.routing import ProtocolRouter, URLRouter, websocket_urlpatterns  # noqa: E402
from rooms.web.origin import allowed_hosts_origin_validator  # noqa: E402


def configured_root_path(app):
    """`app` with every scope's root_path from ROOT_PATH. Daphne takes it from a client's
    `Daphne-Root-Path` header, and Django prefixes every link and redirect with it; once in
    the scope, the header cannot be told from Daphne's own `--root-path`. The server made
    the scope for this connection alone: it is set in place rather than copied, a copy that
    an open WebSocket would keep for its whole life. A plain function returning `app`'s
    coroutine (called by `serving` only), for the same reason as `serving`."""

    def with_root_path(scope: dict, receive, send):
        scope["root_path"] = settings.ROOT_PATH
        return app(scope, receive, send)

    return with_root_path


# `serving`: rooms.publish() called from any thread of this process publishes on this loop.
application = serving(
    configured_root_path(
        ProtocolRouter(
            {
                "http": django_asgi_app,
                "websocket": allowed_hosts_origin_validator(
                    IdentityMiddleware(URLRouter(websocket_urlpatterns))
                ),
            }
        )
    )
)
