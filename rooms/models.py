"""Rooms and their persisted messages (written in batches by rooms.state.history)."""

from datetime import UTC, datetime, timedelta

from django.db import models

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_ms(ts: int) -> datetime:
    """A wire timestamp (ms since the epoch) as an aware datetime, exactly."""
    return EPOCH + timedelta(milliseconds=ts)


def to_ms(moment: datetime) -> int:
    """An aware datetime as a wire timestamp (ms since the epoch), exactly."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


class Room(models.Model):
    """A room that has had messages; members alone live in rooms.state.presence."""

    name = models.CharField(max_length=100, unique=True)
    last_activity = models.DateTimeField()
    last_id = models.BigIntegerField(default=0, help_text="Highest message id persisted.")
    pruned_through = models.BigIntegerField(
        default=0, help_text="Every message up to this id was removed by retention."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    """One chat message; `seq` is its per-room id on the wire."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField("id in room")
    nickname = models.CharField(max_length=32)
    text = models.TextField(blank=True)
    sent_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq")]

    def __str__(self) -> str:
        return f"{self.room.name}#{self.seq} {self.nickname}"
