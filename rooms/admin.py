"""Django admin for rooms, messages and sanctions: moderators browse and search messages and
delete them for everyone, and review and lift bans and mutes."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from rooms.chat import moderation
from rooms.models import Message, Room, Sanction


def _moderates_somewhere(request: HttpRequest) -> bool:
    user = request.user
    return user.has_perm("rooms.moderate") or user.moderated_rooms.exists()


def _moderated(request: HttpRequest, queryset: QuerySet, room_field: str) -> QuerySet:
    """The rows of `queryset` in rooms the user moderates."""
    if request.user.has_perm("rooms.moderate"):
        return queryset
    return queryset.filter(**{f"{room_field}__moderators": request.user})


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms are created by their first message, or here to give them rules: private, with
    members and member groups, with moderators. Their counters are not edited by hand."""

    list_display = ["name", "private", "last_activity", "last_id", "pruned_through"]
    list_filter = ["private"]
    search_fields = ["name"]
    readonly_fields = ["last_id", "pruned_through"]
    filter_horizontal = ["members", "member_groups", "moderators"]
    fields = ["name", "private", "members", "member_groups", "moderators", "last_activity"]
    fields += readonly_fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"last_activity": timezone.now()}


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are read-only; moderators delete them for everyone (the `delete` command's
    effect: gone from replay and the API, removed from every open page), never row by row."""

    list_display = ["seq", "room", "nickname", "text", "sent_at"]
    list_filter = ["room"]
    search_fields = ["nickname", "text"]
    list_select_related = ["room"]
    date_hierarchy = "sent_at"
    ordering = ["-sent_at", "-seq"]
    readonly_fields = ["room", "seq", "nickname", "text", "sent_at"]
    actions = ["delete_messages"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(deleted_at__isnull=True)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False  # deleting is the moderators' action below, which tells the room

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        return _moderates_somewhere(request)

    @admin.action(permissions=["moderate"], description="Delete selected messages for everyone")
    def delete_messages(self, request: HttpRequest, queryset: QuerySet) -> None:
        layer, deleted = get_channel_layer(), 0
        chosen = _moderated(request, queryset, "room").values_list("room__name", "seq")
        for room, seq in chosen:
            nickname = moderation.mark_deleted(room, seq, None)
            if nickname is not None:
                async_to_sync(moderation.announce_deleted)(layer, room, seq, nickname)
                deleted += 1
        self.message_user(request, f"{deleted} messages deleted.")


@admin.register(Sanction)
class SanctionAdmin(admin.ModelAdmin):
    """Kicks, bans and mutes given by moderators: a record, and the bans and mutes in force,
    which a moderator may lift."""

    list_display = ["kind", "nickname", "user", "room", "until", "reason", "by", "created"]
    list_filter = ["kind", "room"]
    search_fields = ["nickname", "reason"]
    list_select_related = ["room", "user", "by"]
    actions = ["lift"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # given in rooms, where the member is reached at once

    def has_change_permission(self, request: HttpRequest, obj: Sanction | None = None) -> bool:
        return False

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        return _moderates_somewhere(request)

    @admin.action(permissions=["moderate"], description="Lift selected bans and mutes now")
    def lift(self, request: HttpRequest, queryset: QuerySet) -> None:
        lifted = moderation.lift_sanctions(_moderated(request, queryset, "room"))
        self.message_user(request, f"{lifted} bans or mutes lifted.")
