"""POST /api/rooms/<room>/messages: a message from another service or a staff member's
browser, through rooms.apublish (docs/api.md, docs/openapi.yaml). GET and HEAD on the same
path stay the read API's (rooms.web.api).

Who may post: a user with a token (`Authorization: Bearer`), under their own name unless
staff; or a staff member signed in to the site, with Django's CSRF token, since a session
cookie is an ambient credential any page could make a browser send. A post also passes the
rules a join does (rooms.access.rules: private rooms, bans, the project's CAN_JOIN), and is
refused while its author is muted there.
"""

import time

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from rooms.access import rules
from rooms.access.directory import display_name, get_directory
from rooms.access.http import by_token, request_user
from rooms.chat.publish import apublish
from rooms.core import errors, names, protocol
from rooms.core.errors import ClientError
from rooms.core.limits import message_bytes_needed, posts
from rooms.web import api

_STATUS = {
    errors.JSON_INVALID: 400,
    errors.PARAMETER_INVALID: 400,
    errors.ROOM_INVALID: 400,
    errors.NICKNAME_REQUIRED: 400,
    errors.NICKNAME_INVALID: 400,
    errors.TEXT_INVALID: 400,
    errors.MESSAGE_TOO_LONG: 400,
    errors.AUTH_REQUIRED: 401,
    errors.TOKEN_INVALID: 401,
    errors.FORBIDDEN: 403,
    errors.ROOM_FORBIDDEN: 403,
    errors.BANNED: 403,
    errors.MUTED: 403,
    errors.NICKNAME_NOT_YOURS: 403,
    errors.NICKNAME_RESERVED: 403,
    errors.RATE_LIMITED: 429,
    errors.SERVICE_UNAVAILABLE: 503,
}


def max_body_bytes() -> int:
    """The largest body a valid post may take: the longest text and nickname, every
    character escaped."""
    return message_bytes_needed(settings.ROOMS_MAX_MESSAGE_LENGTH) + message_bytes_needed(
        names.MAX_NICKNAME_LENGTH
    )


def _error(error: ClientError, status: int | None = None) -> HttpResponse:
    body = {"error": {"code": error.code, "message": error.message}}
    return HttpResponse(
        orjson.dumps(body), status=status or _STATUS[error.code], content_type="application/json"
    )


def parse_post(body: bytes) -> tuple[str, str | None]:
    """The text and the nickname asked for (None: the author's own) of a post's JSON body."""
    try:
        post = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ClientError(errors.JSON_INVALID, "The body must be a JSON object.")
    if (
        not isinstance(post, dict)
        or not isinstance(post.get("text"), str)
        or not isinstance(post.get("nickname", ""), str)
        or not post.keys() <= {"text", "nickname"}
    ):
        raise ClientError(errors.PARAMETER_INVALID, 'Expected {"text": "...", "nickname"?: "..."}.')
    return post["text"], post.get("nickname")


async def _author(request: HttpRequest):
    """The user posting: by token, or a staff member's session with its CSRF token."""
    if by_token(request):
        return await request_user(request)
    user = await request.auser()
    if not user.is_authenticated:
        raise errors.auth_required_to_post()
    if not user.is_staff:
        raise ClientError(errors.FORBIDDEN, "Only staff may post from a signed-in browser.")
    if CsrfViewMiddleware(lambda request: None).process_view(request, None, (), {}) is not None:
        raise ClientError(
            errors.FORBIDDEN, "Send the CSRF token (X-CSRFToken header) with a session."
        )
    return user


async def _nickname(user, asked: str | None) -> str:
    """The name the post is signed with: the author's own, or, for staff, one asked for
    that is no other registered user's."""
    own = display_name(user)
    if asked is None or names.nickname_key(asked.strip()) == names.nickname_key(own):
        return own
    if not user.is_staff:
        raise errors.nickname_not_yours(own)
    if names.nickname_key(asked.strip()) in (await get_directory().current()).reserved:
        raise errors.nickname_reserved(asked.strip())
    return asked


async def post(request: HttpRequest, name: str) -> HttpResponse:
    """Publish the body's text to the room: 201 with the message, as the read API gives it."""
    too_large = ClientError(
        errors.MESSAGE_TOO_LONG, f"The body is larger than {max_body_bytes()} bytes."
    )
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_body_bytes():
        return _error(too_large, 413)
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(too_large, 413)
    if len(body) > max_body_bytes():
        return _error(too_large, 413)
    try:
        user = await _author(request)
        posts.spend(user.pk, time.monotonic(), settings.ROOMS_RATE_LIMIT, settings.ROOMS_RATE_BURST)
        text, asked = parse_post(body)
        room = names.parse_room(name)
        nickname = await _nickname(user, asked)
        handshake = protocol.Handshake(room=room, nickname=display_name(user), format=protocol.TEXT)
        rights = await rules.admit(user, handshake)
        if rights.muted_until > time.time():
            raise errors.muted(rules.when(rights.muted_until))
        message = await apublish(room, text, nickname=nickname)
    except ClientError as error:
        return _error(error)
    response = HttpResponse(message.frame(), status=201, content_type="application/json")
    page = reverse("api-messages", args=[room])
    response["Location"] = f"{page}?before={message.id + 1}&limit=1"
    return response


@csrf_exempt  # checked in _author for sessions only: a token is no ambient credential
@require_http_methods(["GET", "HEAD", "POST"])
async def messages(request: HttpRequest, name: str) -> HttpResponse:
    """The room's messages: read a page of them (GET), or post one (POST)."""
    if request.method == "POST":
        return await post(request, name)
    return await api.messages(request, name)
