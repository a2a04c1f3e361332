"""Moderators' commands carried out: kick, ban and mute a member (and lift them), delete a
message. The consumer hands them over from the socket; the admin calls the same functions.

A member is reached on whichever process holds it through its channel (rooms.core.events:
evict closes it, mute sets its rights). Bans and mutes are rows (rooms.models.Sanction),
announced to every process's directory as they are saved (rooms.access.signals), so that
joins refuse the banned and mute the muted. A deleted message is marked in the database
(written first if the history writer has not yet), dropped from the recent cache, and its
`delete` event goes to the room. Moderators are not sanctioned: not by another moderator,
and bans and mutes in force do not apply to them (rooms.access.rules).
"""

from datetime import datetime, timedelta

import orjson
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from rooms.access.rules import user_facts, when
from rooms.chat.membership import Membership
from rooms.chat.stores import REFUSE_MESSAGE
from rooms.core import errors, names, protocol
from rooms.core.commands import Moderate
from rooms.core.errors import ClientError
from rooms.core.events import evict, mute, now_ms
from rooms.core.groups import room_group
from rooms.models import Message, Room, Sanction, from_ms, to_ms
from rooms.state.backends import get_presence, get_sequence
from rooms.state.presence import Member
from rooms.state.sequence import announce

_KINDS = {protocol.KICK: Sanction.KICK, protocol.BAN: Sanction.BAN, protocol.MUTE: Sanction.MUTE}
_LIFTS = {protocol.UNBAN: Sanction.BAN, protocol.UNMUTE: Sanction.MUTE}
_WHAT = {
    protocol.KICK: "kick members",
    protocol.BAN: "ban members",
    protocol.MUTE: "mute members",
    protocol.UNBAN: "lift bans",
    protocol.UNMUTE: "lift mutes",
    protocol.DELETE: "delete messages",
}


async def carry_out(member: Membership, command: Moderate, fmt: str) -> str:
    """Do what a moderator asked, in their room; the reply frame for them. FORBIDDEN for a
    member who does not moderate the room, COMMAND_INVALID for a target that is not there."""
    if not member.rights.moderator:
        raise errors.forbidden(_WHAT[command.action])
    room = member.handshake.room
    with REFUSE_MESSAGE:
        if command.action == protocol.DELETE:
            await delete(member.layer, room, command.id)
            reply = protocol.moderated(room, command, "", None, fmt)
        else:
            reply = await _sanction(member, command, fmt)
    member.log(command.action, target=command.nickname or command.id)
    return reply


async def _sanction(member: Membership, command: Moderate, fmt: str) -> str:
    room, group = member.handshake.room, member.group
    target = await get_presence().member(group, command.nickname)
    if target is None and command.action == protocol.KICK:
        raise ClientError(errors.COMMAND_INVALID, f"No member {command.nickname!r} is here.")
    nickname = target.nickname if target is not None else command.nickname
    if target is not None and target.user_id is not None:
        if await database_sync_to_async(moderates)(room, target.user_id):
            raise errors.moderator_untouchable(nickname)
    if command.action in _LIFTS:
        await database_sync_to_async(lift)(room, _LIFTS[command.action], nickname, target)
        if target is not None and command.action == protocol.UNMUTE:
            await member.layer.send(target.channel, mute(0))
        return protocol.moderated(room, command, nickname, None, fmt)
    kind = _KINDS[command.action]
    until = await database_sync_to_async(record)(
        room, kind, nickname, target, command, member.rights.user_id
    )
    if target is not None:
        await reach(member.layer, target, kind, until, command.reason)
    until_ms = None if kind == Sanction.KICK else to_ms(until)
    return protocol.moderated(room, command, nickname, until_ms, fmt)


async def reach(layer, target: Member, kind: str, until: datetime | None, reason: str) -> None:
    """Apply a sanction to the member it names, on whichever process it is: a kick or ban
    closes it, a mute refuses its messages until `until`."""
    if kind == Sanction.KICK:
        message = evict(errors.kicked(reason))
    elif kind == Sanction.BAN:
        message = evict(errors.banned(when(until.timestamp()), reason))
    else:
        message = mute(until.timestamp())
    await layer.send(target.channel, message)


def moderates(room: str, user_id: int) -> bool:
    """Whether the user moderates the room (reads the database)."""
    user = get_user_model()._default_manager.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    return user_facts(user)[0] or Room.objects.filter(name=room, moderators=user).exists()


def _room(name: str) -> Room:
    return Room.objects.get_or_create(name=name, defaults={"last_activity": timezone.now()})[0]


def record(
    room: str, kind: str, nickname: str, target: Member | None, command: Moderate, by: int | None
) -> datetime | None:
    """Persist a sanction, for the nickname and, when the member is signed in, its user;
    return until when it holds (None for a kick). Saving it announces it (signals)."""
    until = timezone.now() + timedelta(seconds=command.seconds) if kind != Sanction.KICK else None
    Sanction.objects.create(
        room=_room(room),
        kind=kind,
        nickname=nickname[: names.MAX_NICKNAME_LENGTH],
        nickname_key=names.nickname_key(nickname),
        user_id=target.user_id if target is not None else None,
        until=until,
        reason=command.reason,
        by_id=by,
    )
    return until


def lift(room: str, kind: str, nickname: str, target: Member | None) -> int:
    """End the bans or mutes in force of `kind` on the nickname (and its user); how many."""
    subjects = Sanction.objects.filter(nickname_key=names.nickname_key(nickname))
    if target is not None and target.user_id is not None:
        subjects = subjects | Sanction.objects.filter(user_id=target.user_id)
    now = timezone.now()
    in_force = subjects.filter(room__name=room, kind=kind, until__gt=now)
    return lift_sanctions(in_force)


def lift_sanctions(sanctions) -> int:
    """End these sanctions now (the admin's "lift" too), announcing it to every process."""
    lifted = 0
    for sanction in sanctions.filter(until__gt=timezone.now()):
        sanction.until = timezone.now()
        sanction.save(update_fields=["until"])  # post_save announces the change
        lifted += 1
    return lifted


async def delete(layer, room: str, message_id: int) -> None:
    """Delete message `message_id` of the room for everyone: marked in the database, gone
    from the recent cache, a `delete` event to the room. COMMAND_INVALID if there is none."""
    group = room_group(room)
    cached = await get_sequence().recent(group, message_id - 1, message_id, 1)
    frame = cached[0][1] if cached else None
    nickname = await database_sync_to_async(mark_deleted)(room, message_id, frame)
    if nickname is None:
        raise ClientError(errors.COMMAND_INVALID, f"No message {message_id} in this room.")
    await announce_deleted(layer, room, message_id, nickname)


async def announce_deleted(layer, room: str, message_id: int, nickname: str) -> None:
    """Tell the room that a moderator deleted message `message_id`."""
    await announce(layer, room_group(room), protocol.deleted(room, message_id, nickname, now_ms()))


def mark_deleted(room: str, message_id: int, cached: str | None) -> str | None:
    """Mark the message deleted and drop it from the recent cache; its author's nickname,
    or None when there is no such message (or it is deleted already). `cached`: its JSON
    frame from the recent cache, written here if the history writer has not yet written
    it (the writer then finds it stored, the same message, and moves on)."""
    rows = Message.objects.filter(room__name=room, seq=message_id)
    with transaction.atomic():
        if cached is not None and not rows.exists():
            _store(room, message_id, orjson.loads(cached))
        nickname = rows.filter(deleted_at__isnull=True).values_list("nickname", flat=True).first()
        if nickname is not None:
            rows.update(deleted_at=timezone.now())
    # After the database: a read finding it in neither must not find it undeleted there.
    get_sequence().forget(room_group(room), message_id)
    return nickname


def _store(room: str, message_id: int, event: dict) -> None:
    sent_at = from_ms(event["ts"])
    target = _room(room)
    message = Message(
        room=target, seq=message_id, nickname=event["nickname"], text=event["text"], sent_at=sent_at
    )
    Message.objects.bulk_create([message], ignore_conflicts=True)
    # Its id was issued: ids resume above it even if the writer never gets to write it.
    Room.objects.filter(pk=target.pk, last_id__lt=message_id).update(last_id=message_id)
