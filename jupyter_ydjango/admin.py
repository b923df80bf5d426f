"""Django admin pages for documents and their stored history."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from .models import Document, Snapshot, Update


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    """Documents: path, type, last save and its error, size of the stored history."""

    list_display = ("path", "format", "type", "size", "last_saved", "save_error",
                    "update_rows", "snapshots")
    search_fields = ("path",)
    readonly_fields = ("id", "session_id", "imported", "file_hash", "created", "last_saved",
                       "size", "save_error")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        return super().get_queryset(request).annotate(
            _updates=Count("updates", distinct=True), _snapshots=Count("snapshots", distinct=True)
        )

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
