"""Django admin for rooms, messages and sanctions: moderators browse and search messages and
delete them for everyone, kick, ban and mute members, and lift bans and mutes."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from rooms.chat import moderation
from rooms.core import names
from rooms.core.groups import room_group
from rooms.models import Message, Room, Sanction
from rooms.state.backends import get_presence
from rooms.state.presence import Member


def _moderates_somewhere(request: HttpRequest) -> bool:
    user = request.user
    return user.has_perm("rooms.moderate") or user.moderated_rooms.exists()


def _moderated(request: HttpRequest, queryset: QuerySet, room_field: str = "") -> QuerySet:
    """The rows of `queryset` in rooms the user moderates (`room_field`: the rows' room; none
    for rooms themselves)."""
    if request.user.has_perm("rooms.moderate"):
        return queryset
    lookup = f"{room_field}__moderators" if room_field else "moderators"
    return queryset.filter(**{lookup: request.user})


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


class SanctionForm(forms.ModelForm):
    """A kick, ban or mute given in the admin: the rules of the moderators' commands."""

    target: Member | None = None  # the member present under that nickname, once cleaned

    class Meta:
        model = Sanction
        fields = ["room", "kind", "nickname", "user", "until", "reason"]

    def clean(self) -> dict:
        data = super().clean()
        kind, until, room = data.get("kind"), data.get("until"), data.get("room")
        if kind == Sanction.KICK and until is not None:
            self.add_error("until", "A kick holds nothing for later: leave this empty.")
        if kind in (Sanction.BAN, Sanction.MUTE) and (until is None or until <= timezone.now()):
            self.add_error("until", "Bans and mutes need an end in the future.")
        if room is None or not data.get("nickname"):
            return data
        self.target = _present(room.name, data["nickname"])
        user_id = self.target.user_id if self.target else getattr(data.get("user"), "pk", None)
        if user_id is not None and moderation.moderates(room.name, user_id):
            raise forms.ValidationError("Moderators of this room cannot be sanctioned.")
        if kind == Sanction.KICK and self.target is None:
            self.add_error("nickname", "No member of that nickname is in this room.")
        return data


def _present(room: str, nickname: str) -> Member | None:
    return async_to_sync(get_presence().member)(room_group(room), nickname)


@admin.register(Sanction)
class SanctionAdmin(admin.ModelAdmin):
    """Kicks, bans and mutes: given here or in rooms (with the same effect: a member present
    is reached at once, on whichever process), listed, and bans and mutes lifted."""

    form = SanctionForm
    list_display = ["kind", "nickname", "user", "room", "until", "reason", "by", "created"]
    list_filter = ["kind", "room"]
    search_fields = ["nickname", "reason"]
    list_select_related = ["room", "user", "by"]
    actions = ["lift"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _moderates_somewhere(request)

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "room":
            kwargs["queryset"] = _moderated(request, Room.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Sanction, form: SanctionForm, change: bool):
        target = form.target
        obj.nickname_key, obj.by = names.nickname_key(obj.nickname), request.user
        if target is not None:
            obj.nickname, obj.user_id = target.nickname, obj.user_id or target.user_id
        super().save_model(request, obj, form, change)  # post_save tells every process
        if target is not None:  # once committed, as the directory's reload
            reach = async_to_sync(moderation.reach)
            layer = get_channel_layer()
            transaction.on_commit(lambda: reach(layer, target, obj.kind, obj.until, obj.reason))

    def has_change_permission(self, request: HttpRequest, obj: Sanction | None = None) -> bool:
        return False

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        return _moderates_somewhere(request)

    @admin.action(permissions=["moderate"], description="Lift selected bans and mutes now")
    def lift(self, request: HttpRequest, queryset: QuerySet) -> None:
        lifted = moderation.lift_sanctions(_moderated(request, queryset, "room"))
        self.message_user(request, f"{lifted} bans or mutes lifted.")
