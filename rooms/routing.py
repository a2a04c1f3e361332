"""WebSocket routes. The room pattern takes anything up to the final slash, so that
invalid room names reach the consumer and get a clear error instead of no route."""

from django.urls import re_path

from rooms.chat.consumers import ChatConsumer, NotFoundConsumer

websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<room_name>.*)/$", ChatConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),
]
