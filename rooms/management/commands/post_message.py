"""Post a message to a room from the command line, as the project's code does with
rooms.publish(): every member sees it, it is in history. Needs REDIS_URL, shared with the
servers: with the in-memory layer rooms live inside the server process."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from rooms.chat.publish import DEFAULT_NICKNAME, PublishError, publish


class Command(BaseCommand):
    help = "Post TEXT to ROOM as --as NAME (default 'server'); print the message's id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room")
        parser.add_argument("text")
        parser.add_argument(
            "--as", dest="nickname", default=DEFAULT_NICKNAME, help="the nickname it is signed with"
        )

    def handle(self, *args, room: str, text: str, nickname: str, **options) -> None:
        try:
            message = publish(room, text, nickname=nickname)
        except (PublishError, ImproperlyConfigured) as error:
            code = getattr(error, "code", "")
            raise CommandError(f"{code}: {error}" if code else str(error)) from error
        self.stdout.write(str(message.id))
