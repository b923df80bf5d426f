"""The writer lease: which process writes a document's file, and the file hash a save claims."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from jupyter_ydjango.models import Document


def claim_writer(document_id: uuid.UUID, holder: str, lease: float) -> bool:
    """Take or renew the lease to write the document's file for ``lease`` seconds; True if
    ``holder`` has it (it had it, nobody had it, or the last holder's lease lapsed)."""
    now = timezone.now()
    free = Q(writer=holder) | Q(writer="") | Q(writer_until__isnull=True) | Q(writer_until__lt=now)
    return bool(Document.objects.filter(free, pk=document_id).update(
        writer=holder, writer_until=now + timedelta(seconds=lease)
    ))


def release_writer(document_id: uuid.UUID, holder: str) -> None:
    """Give up the lease to write the document's file, if ``holder`` has it."""
    Document.objects.filter(pk=document_id, writer=holder).update(writer="", writer_until=None)


def claim_file_hash(document_id: uuid.UUID, old_hash: str, new_hash: str) -> bool:
    """Move the document's known file hash from ``old_hash`` to ``new_hash``; True for the one
    process whose update matched (it handles the change on disk). Never for a document whose
    file was deleted meanwhile: a file made again at its path is not its content."""
    return bool(Document.objects.filter(
        pk=document_id, file_hash=old_hash, deleted__isnull=True).update(file_hash=new_hash))

