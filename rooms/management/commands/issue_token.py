"""Print a signed, expiring token for a user, for clients that are not browsers:
ws://HOST/ws/chat/ROOM/?token=TOKEN, or `Authorization: Bearer TOKEN` on the HTTP API."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from rooms.access import tokens


class Command(BaseCommand):
    help = "Print a signed token identifying USERNAME, valid for --ttl seconds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--ttl",
            type=int,
            default=settings.ROOMS_TOKEN_TTL,
            help="seconds the token is valid (default TOKEN_TTL); keep it short: a token in a "
            "query string ends up in access logs",
        )

    def handle(self, *args, username: str, ttl: int, **options) -> None:
        if ttl <= 0:
            raise CommandError("--ttl must be a positive number of seconds.")
        user = (
            get_user_model()
            ._default_manager.filter(**{get_user_model().USERNAME_FIELD: username}, is_active=True)
            .first()
        )
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        self.stdout.write(tokens.issue(user, ttl))
