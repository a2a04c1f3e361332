"""WebSocket routes, and routers that keep nothing for the life of a connection.

The room pattern takes anything up to the final slash, so that invalid room names reach
the consumer and get a clear error instead of no route.

Channels' routers and middleware are coroutines awaiting the next application: each keeps
a frame for as long as the WebSocket is open, and URLRouter a copy of the scope too (about
2 KB per idle connection together; BENCHMARKS.md, "A flatter application chain, one idle
wheel, Redis in C"). The routers here, and the middleware in rooms.access.identity and
rooms.web.origin, are plain callables returning the next application's coroutine: the
connection keeps the consumer's alone.
"""

from collections.abc import Callable

from django.urls import re_path

from rooms.chat.consumers import ChatConsumer, NotFoundConsumer

websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<room_name>.*)/$", ChatConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),
]


class ProtocolRouter:
    """Channels' ProtocolTypeRouter: the application for the scope's type."""

    _asgi_single_callable = True  # asgiref would take a plain callable for ASGI 2

    def __init__(self, applications: dict[str, Callable]) -> None:
        self.applications = applications

    def __call__(self, scope: dict, receive, send):
        try:
            application = self.applications[scope["type"]]
        except KeyError:
            raise ValueError(f"No application configured for scope type {scope['type']!r}")
        return application(scope, receive, send)


class URLRouter:
    """Channels' URLRouter for consumers (`Consumer.as_asgi()`) at the outermost level:
    `url_route` set in the scope, which the server made for this connection alone, rather
    than in a copy; the consumer called without as_asgi's wrapping coroutine."""

    def __init__(self, routes: list) -> None:
        self.routes = routes

    def __call__(self, scope: dict, receive, send):
        path, root_path = scope["path"], scope.get("root_path", "")
        if not path.startswith(root_path):
            raise ValueError(f"No route found for path {path!r}.")
        path = path[len(root_path) :].lstrip("/")
        for route in self.routes:
            match = route.pattern.match(path)
            if match:
                _, args, kwargs = match  # kwargs: a dict of this match's own
                kwargs.update(route.default_args)
                scope["url_route"] = {"args": args, "kwargs": kwargs}
                app = route.callback
                return app.consumer_class(**app.consumer_initkwargs)(scope, receive, send)
        raise ValueError(f"No route found for path {path!r}.")
