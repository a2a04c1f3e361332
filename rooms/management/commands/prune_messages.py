"""Apply the retention caps: keep at most RETENTION_MESSAGES per room, none older than
RETENTION_DAYS. Run it from cron (or any scheduler); it is safe to run at any time."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from rooms.models import Message, Room


def prune(room: Room, keep: int, days: float) -> int:
    """Delete the room's messages beyond the caps; returns how many were deleted."""
    doomed = Message.objects.filter(room=room)
    older = Message.objects.none()
    if keep:
        newest = doomed.order_by("-seq").values_list("seq", flat=True)[keep - 1 : keep]
        if newest:
            older = doomed.filter(seq__lt=newest[0])
    if days:
        older = older | doomed.filter(sent_at__lt=timezone.now() - timedelta(days=days))
    with transaction.atomic():
        highest = older.aggregate(highest=Max("seq"))["highest"]
        if highest is None:
            return 0
        deleted, _ = doomed.filter(seq__lte=highest).delete()
        Room.objects.filter(pk=room.pk, pruned_through__lt=highest).update(pruned_through=highest)
    return deleted


class Command(BaseCommand):
    help = "Delete messages beyond the retention caps (RETENTION_MESSAGES, RETENTION_DAYS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--messages",
            type=int,
            default=settings.ROOMS_RETENTION_MESSAGES,
            help="messages kept per room (0: no cap); default RETENTION_MESSAGES",
        )
        parser.add_argument(
            "--days",
            type=float,
            default=settings.ROOMS_RETENTION_DAYS,
            help="age in days beyond which messages go (0: no cap); default RETENTION_DAYS",
        )

    def handle(self, *args, messages: int, days: float, **options) -> None:
        total = 0
        for room in Room.objects.all():
            deleted = prune(room, messages, days)
            if deleted:
                self.stdout.write(f"{room.name}: {deleted} deleted")
            total += deleted
        self.stdout.write(f"{total} messages deleted")
