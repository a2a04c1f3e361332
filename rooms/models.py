"""Rooms and their persisted messages (written in batches by rooms.state.history)."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_ms(ts: int) -> datetime:
    """A wire timestamp (ms since the epoch) as an aware datetime, exactly."""
    return EPOCH + timedelta(milliseconds=ts)


def to_ms(moment: datetime) -> int:
    """An aware datetime as a wire timestamp (ms since the epoch), exactly."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


class Room(models.Model):
    """A room that has had messages, or rules: who may join it, who moderates it. Members
    alone live in rooms.state.presence."""

    name = models.CharField(max_length=100, unique=True)
    last_activity = models.DateTimeField()
    last_id = models.BigIntegerField(default=0, help_text="Highest message id persisted.")
    pruned_through = models.BigIntegerField(
        default=0, help_text="Every message up to this id was removed by retention."
    )
    private = models.BooleanField(
        default=False,
        help_text="Only its members (users, or users in its groups), its moderators and staff "
        "may join it or read its history; it is not listed.",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="private_rooms"
    )
    member_groups = models.ManyToManyField(Group, blank=True, related_name="private_rooms")
    moderators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="moderated_rooms",
        help_text="They may kick, ban and mute members and delete messages here (users with "
        "the permission 'Can moderate every room' may everywhere).",
    )

    class Meta:
        ordering = ["name"]
        permissions = [("moderate", "Can moderate every room")]

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    """One chat message; `seq` is its per-room id on the wire."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField("id in room")
    nickname = models.CharField(max_length=32)
    text = models.TextField(blank=True)
    sent_at = models.DateTimeField(db_index=True)
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="Deleted by a moderator: never replayed or listed."
    )

    class Meta:
        ordering = ["room", "seq"]
        constraints = [models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq")]

    def __str__(self) -> str:
        return f"{self.room.name}#{self.seq} {self.nickname}"


class Sanction(models.Model):
    """A moderator's action on a member of a room: a kick, or a ban or mute until a time.
    Bans and mutes hold for a nickname (and for the user, if registered) until they end."""

    KICK, BAN, MUTE = "kick", "ban", "mute"
    KINDS = [(KICK, "kick"), (BAN, "ban"), (MUTE, "mute")]

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="sanctions")
    kind = models.CharField(max_length=8, choices=KINDS)
    nickname = models.CharField(max_length=32)
    nickname_key = models.CharField(max_length=256, db_index=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="sanctions",
    )
    until = models.DateTimeField(null=True, blank=True, help_text="Bans and mutes end then.")
    reason = models.CharField(max_length=200, blank=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sanctions_given",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["kind", "until"], name="sanction_kind_until")]

    def __str__(self) -> str:
        return f"{self.kind} {self.nickname} in {self.room.name}"
