"""The database side of a room: its document, the update log, and snapshots of the log.

A room's history lives here, not in its file: the file is imported once per document (the
first snapshot), and from then on every change is an :class:`Update` row; compaction folds
rows into snapshots, one per burst of edits (:mod:`jupyter_ydjango.store.history`). Loading a room
applies every snapshot and every update row of its document (applying a Yjs update twice
changes nothing, so overlaps are harmless). :class:`Fork` rows hold copies of documents.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from jupyter_ydjango.protocol.room_id import RoomId


class Document(models.Model):
    """A file served collaboratively; its id is the ``fileId`` of jupyter-collaboration's API."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    #: The file's absolute location: the resolved notebook root of the server that serves it,
    #: then its API path, ``/``-separated (``store.file_location``); unique among the
    #: documents whose file was not deleted. Servers with different roots sharing one
    #: database each see the documents under their own root, by their API paths.
    path = models.CharField(max_length=1024, db_index=True)
    #: ``json`` or ``text``, as in the room id ``{format}:{type}:{fileId}``.
    format = models.CharField(max_length=16, default="json")
    #: ``notebook`` or ``file``.
    type = models.CharField(max_length=16, default="notebook")
    #: Identifies this document's history: a client that synced another history (the database
    #: was reset, or a snapshot restored) is refused with "unknown session" and reloads.
    session_id = models.UUIDField(default=uuid.uuid4)
    #: Set, once, by the process that imports the file into the history.
    imported = models.BooleanField(default=False)
    #: The version of the file as last imported or saved by any process: the SHA-256 of its
    #: bytes, or, for a file read through a contents manager, ``v:`` and a hash of the
    #: manager's signature of the version (see :mod:`jupyter_ydjango.store.contents`).
    file_hash = models.CharField(max_length=64, blank=True, default="")
    #: SHA-256 of the bytes the last save rendered (a contents manager may write them in
    #: another form, a script); empty while unknown.
    content_hash = models.CharField(max_length=64, blank=True, default="")
    #: Size in bytes of the file as last saved.
    size = models.BigIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    #: When a room last wrote the file.
    last_saved = models.DateTimeField(null=True, blank=True)
    #: When the file was last written as far as the rooms know, and by whom: ``room`` (a
    #: save) or ``outside`` (a change on disk made by something else; the file's mtime).
    #: Empty while unknown (a file imported and never written since).
    written_at = models.DateTimeField(null=True, blank=True)
    written_by = models.CharField(max_length=8, blank=True, default="",
                                  choices=[("room", "room"), ("outside", "outside")])
    #: When the file was deleted (through Jupyter, or on disk). The document stays, with
    #: its history (the last content); a new file at the same path is a new document.
    deleted = models.DateTimeField(null=True, blank=True)
    #: Why the last save failed; empty after a successful save.
    save_error = models.TextField(blank=True, default="")
    #: The loaded room (in some process) that writes the file, and until when its lease runs:
    #: one writer at a time, another takes over when a lease lapses.
    writer = models.CharField(max_length=64, blank=True, default="")
    writer_until = models.DateTimeField(null=True, blank=True)
    #: Every snapshot of the document merged into one update, and which snapshots it holds
    #: (``{count}:{largest id}``): compactions and timelines start from it instead of reading
    #: the whole history. Rebuilt by the first reader that finds it stale.
    checkpoint = models.BinaryField(null=True, blank=True, editable=False)
    checkpoint_key = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["path"], condition=models.Q(deleted__isnull=True),
                                    name="ydjango_document_live_path"),
        ]

    def __str__(self) -> str:
        return f"{self.path} (deleted)" if self.deleted else self.path

    @property
    def room_name(self) -> str:
        """The room id the frontend uses for this document."""
        return str(RoomId(self.format, self.type, str(self.id)))


class Update(models.Model):
    """One or more Yjs updates received by a process, appended in one write."""

    id = models.BigAutoField(primary_key=True)
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="updates")
    #: The updates, each as a varUint length then its bytes (``store.pack_updates``).
    data = models.BinaryField()
    #: How many updates ``data`` holds.
    count = models.PositiveIntegerField(default=1)
    #: The user names of the identities whose updates ``data`` holds (sorted; empty for the
    #: server's own changes, such as a save's).
    authors = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class Snapshot(models.Model):
    """A point of a document's history: what changed up to it, as one Yjs update.

    The document at a point is every snapshot and update row up to its time, applied in
    time order (see :mod:`jupyter_ydjango.store.history`).
    """

    id = models.BigAutoField(primary_key=True)
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="snapshots")
    state = models.BinaryField()
    #: ``import`` for the file's import, ``edit`` for a burst of edits folded from the log,
    #: ``deleted`` for the document's content when its file was deleted, ``base`` for the
    #: points rolled up past the retention limit, ``compaction`` for the whole state (older
    #: compactions).
    reason = models.CharField(max_length=16, default="edit")
    #: Whether it changed the document's content (not only its ``state`` map): a point of
    #: the timeline.
    content = models.BooleanField(default=True)
    #: The time of the point: the last change it holds.
    created = models.DateTimeField(default=timezone.now)
    #: The user names of the identities whose changes it holds (sorted).
    authors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["id"]


class Author(models.Model):
    """The names of an identity that changed documents, as it last connected with them (the
    update log keeps user names only)."""

    username = models.CharField(primary_key=True, max_length=255)
    name = models.TextField(blank=True, default="")
    display_name = models.TextField(blank=True, default="")
    #: When these names were last seen.
    seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["username"]

    def __str__(self) -> str:
        return self.display_name or self.name or self.username


class Fork(models.Model):
    """A copy of a document in a room of its own: a fork (jupyter-collaboration's fork API) or
    the copy a document timeline moves through its history.

    The copy's state lives here, so that any process can serve its room, move it or merge
    it; ``version`` grows with every write (writers compare and swap).
    """

    #: The fork's room id (32 hex digits), as in ``/api/collaboration/room/{id}``.
    id = models.CharField(primary_key=True, max_length=32, editable=False)
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="forks")
    #: ``fork`` (the fork API) or ``timeline`` (a timeline's copy).
    kind = models.CharField(max_length=16, default="fork",
                            choices=[("fork", "fork"), ("timeline", "timeline")])
    #: Whether the copy keeps receiving the document's changes.
    synchronize = models.BooleanField(default=False)
    title = models.TextField(blank=True, default="")
    description = models.TextField(blank=True, default="")
    #: Who made it (a user name).
    owner = models.CharField(max_length=255, blank=True, default="")
    #: The copy, as a Yjs update holding everything.
    state = models.BinaryField()
    version = models.PositiveBigIntegerField(default=0)
    #: A timeline's points (microseconds since the epoch) and the index of the one shown.
    points = models.JSONField(default=list, blank=True)
    position = models.IntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    #: When the copy was last moved, changed or left by its last client.
    used = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} of {self.document}"


#: The roles a grant gives, lowest first: each allows what the ones before it allow.
ROLES = ("viewer", "editor", "runner")
ROLE_CHOICES = [(role, role) for role in ROLES]


class Grant(models.Model):
    """A role on one document, or on a folder (everything under it, later files included),
    for one Django user or one group.

    Exactly one of :attr:`document` and :attr:`folder`, and exactly one of :attr:`user` and
    :attr:`group`, are set. A document grant follows the document when it is renamed.
    """

    document = models.ForeignKey(Document, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="grants")
    #: A folder's location (the notebook root, then its API path, ``/``-separated, as
    #: :attr:`Document.path`): the grant covers every document whose location is under it.
    folder = models.CharField(max_length=1024, blank=True, default="", db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="ydjango_grants")
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="ydjango_grants")
    role = models.CharField(max_length=8, choices=ROLE_CHOICES)
    #: Who granted it (a user name), and when it last changed.
    granted_by = models.CharField(max_length=255, blank=True, default="")
    updated = models.DateTimeField(auto_now=True)
    #: When the grant stops giving its role (``None``: never); a role link's grant expires
    #: with the link.
    expires = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["folder", "document__path"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(document__isnull=False, folder="")
                           | models.Q(document__isnull=True) & ~models.Q(folder="")),
                name="ydjango_grant_one_target"),
            models.CheckConstraint(
                condition=(models.Q(user__isnull=False, group__isnull=True)
                           | models.Q(user__isnull=True, group__isnull=False)),
                name="ydjango_grant_one_subject"),
            models.UniqueConstraint(fields=["document", "user"],
                                    condition=models.Q(document__isnull=False,
                                                       user__isnull=False),
                                    name="ydjango_grant_document_user"),
            models.UniqueConstraint(fields=["document", "group"],
                                    condition=models.Q(document__isnull=False,
                                                       group__isnull=False),
                                    name="ydjango_grant_document_group"),
            models.UniqueConstraint(fields=["folder", "user"],
                                    condition=models.Q(document__isnull=True,
                                                       user__isnull=False),
                                    name="ydjango_grant_folder_user"),
            models.UniqueConstraint(fields=["folder", "group"],
                                    condition=models.Q(document__isnull=True,
                                                       group__isnull=False),
                                    name="ydjango_grant_folder_group"),
        ]

    def __str__(self) -> str:
        who = f"user {self.user.username}" if self.user else f"group {self.group.name}"
        what = self.document.path if self.document else f"{self.folder}/"
        return f"{who}: {self.role} on {what}"


class RoleChange(models.Model):
    """One grant, change of role or revocation, for the document's history: who did it to
    whom, and when."""

    document = models.ForeignKey(Document, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="role_changes")
    folder = models.CharField(max_length=1024, blank=True, default="")
    #: ``user:<name>`` or ``group:<name>``.
    subject = models.CharField(max_length=255)
    #: The role before (``""``: none) and after (``""``: revoked).
    before = models.CharField(max_length=8, blank=True, default="")
    after = models.CharField(max_length=8, blank=True, default="")
    by = models.CharField(max_length=255, blank=True, default="")
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.by}: {self.subject} {self.before or '-'} -> " \
               f"{self.after or '-'}"


class RoleLink(models.Model):
    """A link that gives whoever opens it one role on one document or folder, as a named
    guest, until it expires or is revoked.

    The link's secret is not kept, only its SHA-256 (:attr:`secret_hash`). The role is a
    :class:`Grant` to a group of the link's own (:attr:`group`), which every guest who
    opened the link is a member of for as long as it holds: revoking the link deletes the
    grant, and the guests' connections close as with any revocation.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE,
                                 related_name="ydjango_role_link")
    #: What the link names, as the grant does: a document, or a folder's location.
    document = models.ForeignKey(Document, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="role_links")
    folder = models.CharField(max_length=1024, blank=True, default="")
    role = models.CharField(max_length=8, choices=ROLE_CHOICES)
    created_by = models.CharField(max_length=255, blank=True, default="")
    created = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField()
    revoked = models.DateTimeField(null=True, blank=True)
    #: Guests who opened it.
    opened = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        what = self.document.path if self.document else f"{self.folder}/"
        return f"{self.role} on {what} (link {str(self.id)[:8]})"
