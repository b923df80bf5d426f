"""Django admin pages for documents and their stored history."""

from __future__ import annotations

import json

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from .models import Document, Snapshot, Update


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    """Documents: path, type, last save and its error, size of the stored history; deleted
    files, and their restoration."""

    list_display = ("path", "format", "type", "size", "last_saved", "save_error", "deleted",
                    "connected_users", "update_rows", "snapshots")
    list_filter = (("deleted", admin.EmptyFieldListFilter),)
    search_fields = ("path",)
    readonly_fields = ("id", "session_id", "imported", "file_hash", "created", "last_saved",
                       "written_at", "written_by", "size", "save_error", "deleted")
    actions = ["restore_deleted"]

    @admin.action(description="Restore the deleted file (its last content)")
    def restore_deleted(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        from .restore import RestoreError, restore_deleted

        for document in queryset.filter(deleted__isnull=False):
            try:
                path = restore_deleted(document.id)
            except RestoreError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(request, f"{document.path}: restored to {path}")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        return super().get_queryset(request).annotate(
            _updates=Count("updates", distinct=True), _snapshots=Count("snapshots", distinct=True)
        )

    @admin.display(description="connected here")
    def connected_users(self, obj: Document) -> str:
        """Who is in the document's room, as this process sees it (its awareness states)."""
        names = _room_users(obj.room_name)
        return ", ".join(names) if names else "-"

    @admin.display(description="update rows", ordering="_updates")
    def update_rows(self, obj: Document) -> int:
        return obj._updates  # type: ignore[attr-defined]

    @admin.display(description="snapshots", ordering="_snapshots")
    def snapshots(self, obj: Document) -> int:
        return obj._snapshots  # type: ignore[attr-defined]


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    """Snapshots of documents (read-only)."""

    list_display = ("document", "reason", "created", "size")
    list_filter = ("reason",)
    exclude = ("state",)
    actions = ["restore"]

    @admin.action(description="Restore this snapshot (as an edit everyone receives)")
    def restore(self, request: HttpRequest, queryset: QuerySet[Snapshot]) -> None:
        from .restore import RestoreError, restore_snapshot

        for snapshot in queryset.order_by("id"):
            try:
                changed = async_to_sync(restore_snapshot)(snapshot.id)
            except RestoreError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(
                request,
                f"{snapshot.document}: restored the snapshot of {snapshot.created:%Y-%m-%d %H:%M}"
                if changed else f"{snapshot.document}: already holds that snapshot's content",
            )

    @admin.display(description="bytes")
    def size(self, obj: Snapshot) -> int:
        return len(obj.state)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Update)
class UpdateAdmin(admin.ModelAdmin):
    """The update log (read-only)."""

    list_display = ("document", "count", "created", "size")
    exclude = ("data",)

    @admin.display(description="bytes")
    def size(self, obj: Update) -> int:
        return len(obj.data)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


def _room_users(room_name: str) -> list[str]:
    """Names in the awareness states of a room loaded in this process (any event loop)."""
    from .rooms import _registries

    names: list[str] = []
    for registry in list(_registries.values()):
        room = registry.rooms.get(room_name)
        if room is None:
            continue
        for _clock, state in list(room._awareness.values()):
            try:
                user = json.loads(state).get("user") or {}
            except (ValueError, AttributeError):
                continue
            name = user.get("display_name") or user.get("name") or user.get("username")
            if name:
                names.append(str(name))
    return sorted(set(names))
