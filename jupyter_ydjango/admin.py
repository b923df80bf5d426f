"""Django admin pages for documents and their stored history."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST

from jupyter_ydjango.api.roles import announce_grant_change
from jupyter_ydjango.conf import get_setting
from jupyter_ydjango.formats.ydoc import find_format
from jupyter_ydjango.models import Document, Fork, Grant, RoleChange, RoleLink, Snapshot, Update
from jupyter_ydjango.store import links
from jupyter_ydjango.store.grants import record_change


class GrantInline(admin.TabularInline):
    """The roles given on this document (folder grants that cover it are on the grants'
    page). A change made here is recorded in the document's role history."""

    model = Grant
    fk_name = "document"
    fields = ("user", "group", "role", "granted_by", "updated")
    readonly_fields = ("granted_by", "updated")
    raw_id_fields = ("user",)
    extra = 0


class RoleChangeInline(admin.TabularInline):
    """Who granted, changed or revoked which role on this document, and when."""

    model = RoleChange
    fields = ("at", "by", "subject", "before", "after")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    """Documents: path, type, last save and its error, size of the stored history; deleted
    files, and their restoration; a document's page shows its timeline, each point with a
    "Restore this point" button."""

    list_display = ("path", "format", "type", "size", "last_saved", "save_error", "deleted",
                    "connected_users", "update_rows", "snapshots")
    list_filter = (("deleted", admin.EmptyFieldListFilter),)
    search_fields = ("path",)
    readonly_fields = ("id", "session_id", "imported", "file_hash", "created", "last_saved",
                       "written_at", "written_by", "size", "save_error", "deleted")
    actions = ["restore_deleted"]
    inlines = [GrantInline, RoleChangeInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Grants edited on the page are kept in the role history, by the admin's user."""
        if formset.model is not Grant:
            super().save_formset(request, form, formset, change)
            return
        by = request.user.get_username()
        before = {g.pk: g.role for g in formset.queryset}
        grants = formset.save(commit=False)
        changed = False
        for grant in formset.deleted_objects:
            record_change(grant, before.get(grant.pk, ""), "", by)
            grant.delete()
            changed = True
        for grant in grants:
            grant.granted_by = by
            grant.save()
            if before.get(grant.pk, "") != grant.role:
                record_change(grant, before.get(grant.pk, ""), grant.role, by)
                changed = True
        if changed:  # the open connections to the document follow at once
            announce_grant_change(str(form.instance.pk), None)

    @admin.action(description="Restore the deleted file (its last content)")
    def restore_deleted(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        from jupyter_ydjango.documents.restore import RestoreError, restore_deleted

        for document in queryset.filter(deleted__isnull=False):
            try:
                path = restore_deleted(document.id)
            except RestoreError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(request, f"{document.path}: restored to {path}")

    def get_urls(self) -> list[URLPattern]:
        restore = path("<path:object_id>/restore-point/",
                       self.admin_site.admin_view(self.restore_point_view),
                       name="jupyter_ydjango_document_restore_point")
        return [restore, *super().get_urls()]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The document's page, with its timeline (the points the stock frontend shows)."""
        from jupyter_ydjango.store.history import build_timeline, read_changes, to_micros
        from jupyter_ydjango.store.records import author_names

        document = self.get_object(request, object_id)
        doc_format = None if document is None else find_format(document.format,
                                                               document.type)
        context = dict(extra_context or {})
        if document is not None and doc_format is not None:
            gap = get_setting("YDJANGO_HISTORY_BURST_GAP")
            changes = read_changes(document.id, gap, doc_format=doc_format)
            line = build_timeline(changes, doc_format, gap) if changes else None
            points = line.points if line else []
            authors = line.authors if line else []
            names = author_names({a for point in authors for a in point})
            context.update(
                ydjango_timeline=[
                    {"time": p, "at": to_micros(p),
                     "authors": [{"username": a, "label": names[a]["display_name"]
                                  or names[a]["name"] or a} for a in point_authors]}
                    for p, point_authors in zip(points, authors, strict=True)],
                ydjango_restore_url=reverse("admin:jupyter_ydjango_document_restore_point",
                                            args=[document.pk]),
                ydjango_deleted=document.deleted is not None,
            )
        return super().change_view(request, object_id, form_url, context)

    @method_decorator(require_POST)
    def restore_point_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Restore the point of the document's timeline at time ``at`` (POST)."""
        from jupyter_ydjango.documents.fork_room import MergeConflict
        from jupyter_ydjango.documents.room import LoadError
        from jupyter_ydjango.documents.timeline import restore_point
        from jupyter_ydjango.store.history import from_micros
        from jupyter_ydjango.store.records import DocumentInfo

        document = self.get_object(request, object_id)
        if document is None:
            raise Http404("no such document")
        if not self.has_change_permission(request, document):
            raise PermissionDenied("not allowed to change documents")
        doc_format = find_format(document.format, document.type)
        try:
            when = from_micros(int(request.POST.get("at", "")))
        except ValueError:
            when = None
        if doc_format is None or when is None:
            self.message_user(request, "This point cannot be restored.", messages.ERROR)
        else:
            try:
                changed = async_to_sync(restore_point)(DocumentInfo.of(document), doc_format,
                                                       when, request.user.get_username())
            except (MergeConflict, LoadError) as exc:
                self.message_user(request, f"{document.path}: {exc}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{document.path}: restored the point of {when:%Y-%m-%d %H:%M:%S}"
                    if changed else f"{document.path}: already holds that point's content")
        return HttpResponseRedirect(reverse("admin:jupyter_ydjango_document_change",
                                            args=[document.pk]))

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
        from jupyter_ydjango.documents.restore import RestoreError, restore_snapshot

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


@admin.register(Fork)
class ForkAdmin(admin.ModelAdmin):
    """Forks and timelines' copies (read-only; the fork API makes, merges and deletes them)."""

    list_display = ("id", "document", "kind", "title", "owner", "synchronize", "created",
                    "used")
    list_filter = ("kind",)
    exclude = ("state",)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
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
    from jupyter_ydjango.rooms.room import rooms_named

    names: list[str] = []
    for room in rooms_named(room_name):
        for state in room.awareness_states():
            try:
                user = json.loads(state).get("user") or {}
            except (ValueError, AttributeError):
                continue
            name = user.get("display_name") or user.get("name") or user.get("username")
            if name:
                names.append(str(name))
    return sorted(set(names))


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    """Every grant, on documents and on folders."""

    list_display = ("__str__", "role", "granted_by", "updated")
    list_filter = ("role",)
    search_fields = ("folder", "document__path", "user__username", "group__name")
    raw_id_fields = ("document", "user")
    readonly_fields = ("granted_by", "updated")

    def save_model(self, request: HttpRequest, obj: Grant, form: Any, change: bool) -> None:
        before = Grant.objects.filter(pk=obj.pk).values_list("role", flat=True).first() or ""
        obj.granted_by = request.user.get_username()
        super().save_model(request, obj, form, change)
        if before != obj.role:
            record_change(obj, before, obj.role, obj.granted_by)
            announce_grant_change(obj.document_id and str(obj.document_id), obj.folder)

    def delete_model(self, request: HttpRequest, obj: Grant) -> None:
        record_change(obj, obj.role, "", request.user.get_username())
        target = (obj.document_id and str(obj.document_id), obj.folder)
        super().delete_model(request, obj)
        announce_grant_change(*target)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Grant]) -> None:
        for grant in queryset:
            self.delete_model(request, grant)


@admin.register(RoleLink)
class RoleLinkAdmin(admin.ModelAdmin):
    """The role links (their secrets are not kept: a link is shown once, when made)."""

    list_display = ("__str__", "role", "created_by", "created", "expires", "revoked", "opened")
    list_filter = ("role", ("revoked", admin.EmptyFieldListFilter))
    search_fields = ("folder", "document__path", "created_by")
    readonly_fields = ("id", "group", "document", "folder", "role", "created_by", "created",
                       "expires", "revoked", "opened")
    actions = ["revoke_links"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made where the link can be shown: the API, the share dialog

    @admin.action(description="Revoke the selected links (their guests are disconnected)")
    def revoke_links(self, request: HttpRequest, queryset: QuerySet[RoleLink]) -> None:
        for link in queryset:
            info = links.revoke(str(link.pk), by=request.user.get_username())
            announce_grant_change(info.document_id, info.folder or None)
        self.message_user(request, f"{queryset.count()} link(s) revoked")


@admin.register(RoleChange)
class RoleChangeAdmin(admin.ModelAdmin):
    """The history of roles: who granted, changed or revoked what, and when (read only)."""

    list_display = ("at", "by", "subject", "before", "after", "document", "folder")
    search_fields = ("subject", "by", "folder", "document__path")
    readonly_fields = ("document", "folder", "subject", "before", "after", "by", "at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

