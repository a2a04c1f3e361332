"""The read-only HTTP API over rooms, members and history (docs/api.md, docs/openapi.yaml).

Messages come from the same reads as WebSocket history (rooms.state.history.fetch: the recent
cache merged with the database), as the very JSON frames the WebSocket sends.
"""

import orjson
from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from rooms.access.http import request_user
from rooms.access.rules import may_read
from rooms.core import errors, names
from rooms.core.errors import ClientError
from rooms.core.groups import room_group
from rooms.models import Room, to_ms
from rooms.state import history
from rooms.state.backends import get_presence, get_sequence

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

_STATUS = {
    errors.ROOM_INVALID: 400,
    errors.PARAMETER_INVALID: 400,
    errors.TOKEN_INVALID: 401,
    errors.ROOM_NOT_FOUND: 404,
}


def _json(body: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def _error(error: ClientError) -> HttpResponse:
    body = {"error": {"code": error.code, "message": error.message}}
    return _json(body, _STATUS[error.code])


def _integer(
    request: HttpRequest, key: str, default: int | None, low: int, high: int
) -> int | None:
    raw = request.GET.get(key)
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= 18 and low <= int(raw) <= high:
        return int(raw)
    span = f"from {low} to {high}" if high < history.NEWEST else f"of {low} or more"
    raise ClientError(errors.PARAMETER_INVALID, f"{key} must be a whole number {span}.")


def _stored_rooms() -> dict[str, tuple[int, int]]:
    rows = Room.objects.values_list("name", "last_activity", "last_id")
    return {name: (to_ms(activity), last_id) for name, activity, last_id in rows}


def _stored_room(name: str) -> tuple[int, int] | None:
    row = Room.objects.filter(name=name).values_list("last_activity", "last_id").first()
    return (to_ms(row[0]), row[1]) if row else None


@require_safe
async def rooms(request: HttpRequest) -> HttpResponse:
    """Every room with messages or members: name, member count, last activity (ms); private
    rooms only for those who may join them."""
    try:
        user = await request_user(request)
    except ClientError as error:
        return _error(error)
    stored = await database_sync_to_async(_stored_rooms)()
    occupied = await get_presence().occupied()
    visible = [
        name for name in sorted(stored.keys() | occupied.keys()) if await may_read(user, name)
    ]
    listed = [
        {
            "name": name,
            "members": occupied.get(name, 0),
            "last_activity": stored[name][0] if name in stored else None,
        }
        for name in visible
    ]
    return _json({"rooms": listed})


async def _last_message(room: str) -> tuple[int, int] | None:
    """The newest message's (id, ts), from the recent cache."""
    newest = await get_sequence().recent(room_group(room), 0, history.NEWEST, 1)
    if not newest:
        return None
    return newest[0][0], orjson.loads(newest[0][1])["ts"]


async def _readable(request: HttpRequest, name: str) -> None:
    """ROOM_NOT_FOUND for a private room the requester may not see (not telling it exists);
    TOKEN_INVALID for a token that is not valid."""
    if not await may_read(await request_user(request), name):
        raise errors.room_not_found(name)


@require_safe
async def room(request: HttpRequest, name: str) -> HttpResponse:
    """One room: its members, member count, last activity and last message id."""
    try:
        name = names.parse_room(name)
        await _readable(request, name)
    except ClientError as error:
        return _error(error)
    members = await get_presence().members(room_group(name))
    stored = await database_sync_to_async(_stored_room)(name)
    if stored is None and not members:
        return _error(errors.room_not_found(name))
    activity, last_id = stored or (None, 0)
    newest = await _last_message(name)
    if newest is not None and newest[0] > last_id:
        last_id, activity = newest[0], max(activity or 0, newest[1])
    return _json(
        {
            "name": name,
            "members": members,
            "member_count": len(members),
            "last_activity": activity,
            "last_id": last_id,
        }
    )


@require_safe
async def messages(request: HttpRequest, name: str) -> HttpResponse:
    """A page of a room's messages, oldest first: the newest `limit` with id < `before`."""
    try:
        name = names.parse_room(name)
        before = _integer(request, "before", None, 1, history.NEWEST)
        limit = _integer(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        await _readable(request, name)
    except ClientError as error:
        return _error(error)
    upto = history.NEWEST if before is None else before - 1
    page = await history.fetch(name, room_group(name), 0, upto, limit)
    if not page.messages:
        exists = await get_presence().members(room_group(name)) or await database_sync_to_async(
            _stored_room
        )(name)
        if not exists:
            return _error(errors.room_not_found(name))
    more = (
        bool(page.messages)
        and (page.truncated or len(page.messages) == limit)
        and page.messages[0][0] > 1
    )
    body = {
        "room": name,
        "messages": [orjson.Fragment(frame) for _, frame in page.messages],
        "next_before": page.messages[0][0] if more else None,
    }
    return _json(body)
