"""Access changes made in this process (a user saved or deleted, a room's rules changed in the
admin, a ban or mute given or lifted) announced to every process's directory at once
(rooms.access.directory)."""

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from rooms.access.directory import announce_names, announce_reload, display_name
from rooms.core import names
from rooms.models import Room, Sanction


def _user_saved(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a sign-in
    key = names.nickname_key(display_name(instance))
    if instance.is_active:
        announce_names(reserve=[key])
    else:
        announce_names(release=[key])


def _user_deleted(sender, instance, **kwargs) -> None:
    announce_names(release=[names.nickname_key(display_name(instance))])


def _room_changed(sender, **kwargs) -> None:
    # Once committed: a process reloading before would keep the old rules until its next
    # refresh (ACCESS_REFRESH). Outside a transaction, at once.
    transaction.on_commit(announce_reload)


def _sanction_changed(sender, instance, **kwargs) -> None:
    if instance.kind != Sanction.KICK:  # a kick holds nothing for later joins
        transaction.on_commit(announce_reload)


def connect() -> None:
    """Connect the receivers (rooms.apps)."""
    user = get_user_model()
    post_save.connect(_user_saved, sender=user, dispatch_uid="rooms.access.user_saved")
    post_delete.connect(_user_deleted, sender=user, dispatch_uid="rooms.access.user_deleted")
    post_save.connect(_room_changed, sender=Room, dispatch_uid="rooms.access.room_saved")
    post_save.connect(_sanction_changed, sender=Sanction, dispatch_uid="rooms.access.sanctioned")
    post_delete.connect(
        _sanction_changed, sender=Sanction, dispatch_uid="rooms.access.sanction_deleted"
    )
    for relation in (Room.members, Room.member_groups, Room.moderators):
        m2m_changed.connect(
            _room_changed, sender=relation.through, dispatch_uid=f"rooms.access.{relation.field}"
        )
