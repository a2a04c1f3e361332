"""The web chat pages: the lobby, and one page per room. The chat itself runs in the
browser (rooms/static/rooms/chat.js) over the JSON WebSocket protocol."""

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from rooms.access.directory import display_name
from rooms.core import names
from rooms.core.errors import ClientError


def _limits() -> dict[str, int]:
    return {
        "max_nickname_length": names.MAX_NICKNAME_LENGTH,
        "max_room_name_length": names.MAX_ROOM_NAME_LENGTH,
        "max_message_length": settings.ROOMS_MAX_MESSAGE_LENGTH,
    }


def _signed_in(request: HttpRequest) -> str:
    """The name a signed-in user chats under; "" for anonymous visitors."""
    return display_name(request.user) if request.user.is_authenticated else ""


def _lobby(request: HttpRequest, error: str = "", status: int = 200, **values: str) -> HttpResponse:
    context = {"error": error, "values": values, "signed_in": _signed_in(request), **_limits()}
    return render(request, "rooms/index.html", context, status=status)


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    """The lobby: active rooms (loaded by the page from /api/rooms) and the join form."""
    return _lobby(request)


@require_safe
def enter(request: HttpRequest) -> HttpResponse:
    """The join form's target: send the browser to the room's own address."""
    room = request.GET.get("room", "").strip()
    nickname = _signed_in(request) or request.GET.get("nickname", "").strip()
    try:
        room = names.parse_room(room)
        names.parse_nickname(nickname)
    except ClientError as error:
        return _lobby(request, error.message, 400, room=room, nickname=nickname)
    query = urlencode({"nickname": nickname})
    return HttpResponseRedirect(f"{reverse('room', args=[room])}?{query}")  # under ROOT_PATH


@require_safe
def room(request: HttpRequest, room_name: str) -> HttpResponse:
    """One room's chat page; the nickname is the signed-in user's, or comes from ?nickname=,
    or is asked for."""
    try:
        room_name = names.parse_room(room_name)
    except ClientError as error:
        return _lobby(request, error.message, 400, room=room_name)
    signed_in = _signed_in(request)
    context = {
        "room": room_name,
        "nickname": signed_in or request.GET.get("nickname", ""),
        "signed_in": signed_in,
        **_limits(),
    }
    return render(request, "rooms/room.html", context)
