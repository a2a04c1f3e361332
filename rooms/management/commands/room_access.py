"""Show or change who may join a room and who moderates it: make it private or public, add
or remove its members (users, groups) and its moderators. The admin does the same."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from rooms.access.directory import announce_reload
from rooms.core import names
from rooms.core.errors import ClientError
from rooms.models import Room


class Command(BaseCommand):
    help = "Show or change a room's access: private or public, members, member groups, moderators."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room")
        privacy = parser.add_mutually_exclusive_group()
        privacy.add_argument("--private", action="store_true", help="only members may join")
        privacy.add_argument("--public", action="store_true", help="anyone may join")
        for option in ("member", "group", "moderator"):
            parser.add_argument(f"--add-{option}", action="append", default=[], metavar="NAME")
            parser.add_argument(f"--remove-{option}", action="append", default=[], metavar="NAME")

    def handle(self, *args, room: str, private: bool, public: bool, **options) -> None:
        try:
            name = names.parse_room(room)
        except ClientError as error:
            raise CommandError(error.message)
        with transaction.atomic():
            target, _ = Room.objects.get_or_create(
                name=name, defaults={"last_activity": timezone.now()}
            )
            if private or public:
                target.private = private
                target.save(update_fields=["private"])
            for option, relation, lookup in (
                ("member", target.members, self._user),
                ("group", target.member_groups, self._group),
                ("moderator", target.moderators, self._user),
            ):
                relation.add(*(lookup(value) for value in options[f"add_{option}"]))
                relation.remove(*(lookup(value) for value in options[f"remove_{option}"]))
        announce_reload()
        self.stdout.write(
            f"{name}: {'private' if target.private else 'public'}; "
            f"members: {_list(target.members)}; groups: {_list(target.member_groups)}; "
            f"moderators: {_list(target.moderators)}"
        )

    def _user(self, username: str):
        model = get_user_model()
        user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return user

    def _group(self, name: str) -> Group:
        group = Group.objects.filter(name=name).first()
        if group is None:
            raise CommandError(f"No group {name!r}.")
        return group


def _list(relation) -> str:
    return ", ".join(str(item) for item in relation.all()) or "-"
