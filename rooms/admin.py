"""Django admin for rooms and messages: moderators browse, search and delete messages."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from rooms.core.groups import room_group
from rooms.models import Message, Room
from rooms.state.backends import get_sequence


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
    """Messages are read-only; a moderator (delete permission) may delete them."""

    list_display = ["seq", "room", "nickname", "text", "sent_at"]
    list_filter = ["room"]
    search_fields = ["nickname", "text"]
    list_select_related = ["room"]
    date_hierarchy = "sent_at"
    ordering = ["-sent_at", "-seq"]
    readonly_fields = ["room", "seq", "nickname", "text", "sent_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        """Delete, and drop it from the recent cache so that no join replays it."""
        super().delete_model(request, obj)
        get_sequence().forget(room_group(obj.room.name), obj.seq)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Delete several, dropping each from the recent cache too."""
        doomed = list(queryset.values_list("room__name", "seq"))
        super().delete_queryset(request, queryset)
        for name, seq in doomed:
            get_sequence().forget(room_group(name), seq)
