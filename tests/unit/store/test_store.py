"""The pure and file-system parts of the store, path safety, and edits from a changed file."""

from __future__ import annotations

import copy
import os
import stat
import time
from pathlib import Path

import pycrdt
import pytest
from notebooks import generated_notebook

from jupyter_ydjango.formats.builtin import FormatError, NotebookFormat
from jupyter_ydjango.formats.notebook import (
    load_into,
    notebook_from_doc,
    read_notebook,
    replace_content,
)
from jupyter_ydjango.protocol.messages import ProtocolError
from jupyter_ydjango.store import disk
from jupyter_ydjango.store.disk import read_file, stat_file, write_copy, write_file_atomic
from jupyter_ydjango.store.paths import PathError, normalize_api_path, resolve_in_root
from jupyter_ydjango.store.records import file_location
from jupyter_ydjango.store.update_log import pack_updates, unpack_updates


@pytest.mark.parametrize(("given", "expected"), [
    ("a.ipynb", "a.ipynb"),
    ("dir/a.ipynb", "dir/a.ipynb"),
    ("dir//./a.ipynb", "dir/a.ipynb"),
    ("dir/a.ipynb/", "dir/a.ipynb"),
    ("dir/..a.ipynb", "dir/..a.ipynb"),
])
def test_normalize_accepts(given: str, expected: str) -> None:
    assert normalize_api_path(given) == expected


@pytest.mark.parametrize("given", [
    "", "/", "../a.ipynb", "dir/../../a.ipynb", "dir/..", "/etc/passwd", "C:/x.ipynb",
    "dir\\..\\a.ipynb", "a\x00.ipynb", "a\n.ipynb",
])
def test_normalize_refuses(given: str) -> None:
    with pytest.raises(PathError):
        normalize_api_path(given)


def test_resolve_refuses_symlinks_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.ipynb").write_text("{}")
    (root / "out.ipynb").symlink_to(tmp_path / "secret.ipynb")
    (root / "sub" / "up").symlink_to(tmp_path)
    (root / "in.ipynb").symlink_to(root / "sub")
    with pytest.raises(PathError):
        resolve_in_root(root, "out.ipynb")
    with pytest.raises(PathError):
        resolve_in_root(root, "sub/up/secret.ipynb")
    assert resolve_in_root(root, "in.ipynb") == (root / "sub").resolve()
    assert resolve_in_root(root, "sub/new.ipynb") == (root / "sub" / "new.ipynb").resolve()


def test_file_operations_never_go_through_a_link_put_in_place_after_resolving(
        tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    real = resolve_in_root(root, "a.ipynb")
    secret = tmp_path / "secret.ipynb"
    secret.write_bytes(b"outside")
    real.symlink_to(secret)  # between the check and the use
    with pytest.raises(PathError):
        read_file(real)
    with pytest.raises(PathError):
        stat_file(real)
    with pytest.raises(PathError):
        write_file_atomic(real, b"room", replace_only=True)
    assert secret.read_bytes() == b"outside" and real.is_symlink()
    assert [p.name for p in root.iterdir()] == ["a.ipynb"]  # no temporary file left


def test_pack_round_trip_and_truncation() -> None:
    updates = [b"", b"\x00", bytes(range(256)) * 3, b"x" * 200]
    packed = pack_updates(updates)
    assert unpack_updates(packed) == updates
    assert unpack_updates(b"") == []
    with pytest.raises(ProtocolError):
        unpack_updates(packed[:-1])


def test_atomic_write_keeps_permissions_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    path.write_bytes(b"old")
    os.chmod(path, 0o604)
    state = write_file_atomic(path, b"new content")
    assert path.read_bytes() == b"new content"
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert state == read_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"], "no temporary left"
    fresh = tmp_path / "fresh.ipynb"
    write_file_atomic(fresh, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_failure_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    path.write_bytes(b"old")

    with pytest.raises(TypeError):
        write_file_atomic(path, object())  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"]


def test_copies_never_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    first = write_copy(path, "unsaved", b"1")
    second = write_copy(path, "unsaved", b"2")
    assert first != second
    assert first.name.startswith("nb.unsaved-") and first.suffix == ".ipynb"
    assert (first.read_bytes(), second.read_bytes()) == (b"1", b"2")


def _sync(a: pycrdt.Doc, b: pycrdt.Doc) -> None:
    ua = a.get_update(b.get_state())
    ub = b.get_update(a.get_state())
    b.apply_update(ua)
    a.apply_update(ub)


def test_change_on_disk_keeps_concurrent_edits_of_unchanged_cells() -> None:
    nb = generated_notebook(20)
    room, client = pycrdt.Doc(), pycrdt.Doc()
    load_into(room, copy.deepcopy(nb))
    _sync(room, client)
    # a client types into cell 3 while the file changes cells 10 and 15 and gains a cell
    cell3 = client.get("cells", type=pycrdt.Array)[3].get("source")
    with client.transaction():
        cell3 += " typed by a client"
    disk = copy.deepcopy(nb)
    disk.cells[10].source = "changed on disk"
    disk.cells[15].metadata = {"tags": ["disk"]}
    disk.cells.append(copy.deepcopy(disk.cells[0]))
    disk.cells[-1].id = "appended"
    disk.metadata["disk"] = True
    assert replace_content(room, disk)
    _sync(room, client)
    for doc in (room, client):
        got = notebook_from_doc(doc)
        assert len(got.cells) == 21
        assert got.cells[3].source.endswith(" typed by a client")
        assert got.cells[10].source == "changed on disk"
        assert got.cells[15].metadata == {"tags": ["disk"]}
        assert got.cells[20].id == "appended"
        assert got.metadata["disk"] is True
    assert not replace_content(room, notebook_from_doc(room)), "no change, no edit"


def test_notebook_format_refuses_invalid_documents() -> None:
    fmt = NotebookFormat()
    doc = pycrdt.Doc()
    fmt.load_into(doc, generated_notebook(3), "x.ipynb", "0" * 64)
    with doc.transaction():
        doc.get("cells", type=pycrdt.Array)[0]["cell_type"] = "bogus"
    with pytest.raises(FormatError, match="Invalid notebook"):
        fmt.render(fmt.read(doc))


def test_admin_pages_render(tmp_path: Path) -> None:
    """The admin's document, snapshot and update lists render with data in them."""
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from jupyter_ydjango.models import Document, Snapshot, Update

    call_command("migrate", interactive=False, verbosity=0)
    document = Document.objects.create(path=file_location(f"{tmp_path.name}/admin.ipynb"))
    Snapshot.objects.create(document=document, state=b"\x00\x00", reason="import")
    Update.objects.create(document=document, data=b"\x02\x00\x00")
    User.objects.filter(username="admin-test").delete()
    User.objects.create_superuser("admin-test", "a@example.com", "pw")
    client = Client(HTTP_HOST="localhost")
    client.force_login(User.objects.get(username="admin-test"))
    for page in ("document", "snapshot", "update"):
        response = client.get(f"/admin/jupyter_ydjango/{page}/")
        assert response.status_code == 200, page
        assert b"admin.ipynb" in response.content


def test_restore_snapshot_is_an_edit_of_the_history(tmp_path: Path) -> None:
    """The admin's restore action brings a snapshot's content back as a logged change."""
    from asgiref.sync import async_to_sync
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from jupyter_ydjango.documents.restore import restore_snapshot
    from jupyter_ydjango.models import Document, Snapshot, Update
    from jupyter_ydjango.store import update_log

    call_command("migrate", interactive=False, verbosity=0)
    fmt = NotebookFormat()
    document = Document.objects.create(
        path=file_location(f"{tmp_path.name}/restore.ipynb"))
    original = generated_notebook(5)
    doc = pycrdt.Doc(client_id=0)
    fmt.load_into(doc, copy.deepcopy(original), document.path, "0" * 64)
    snapshot = Snapshot.objects.create(document=document, reason="import",
                                       state=doc.get_update())
    before = doc.get_state()
    with doc.transaction():
        del doc.get("cells", type=pycrdt.Array)[0]
    Update.objects.create(document=document,
                          data=update_log.pack_updates([doc.get_update(before)]))

    def stored_content() -> object:
        history = update_log.load_history(document.id)
        replay = pycrdt.Doc()
        for _, state in history.snapshots:
            replay.apply_update(state)
        for _, data in history.updates:
            for update in update_log.unpack_updates(data):
                replay.apply_update(update)
        return fmt.read(replay)

    assert len(stored_content().cells) == 4
    User.objects.filter(username="restorer").delete()
    admin_user = User.objects.create_superuser("restorer", "r@example.com", "pw")
    client = Client(HTTP_HOST="localhost")
    client.force_login(admin_user)
    response = client.post("/admin/jupyter_ydjango/snapshot/",
                           {"action": "restore", "_selected_action": [snapshot.id]}, follow=True)
    assert response.status_code == 200
    assert b"restored the snapshot" in response.content
    assert stored_content().cells == read_back(original).cells
    assert Update.objects.filter(document=document).count() == 2, "appended, not rewritten"
    assert not async_to_sync(restore_snapshot)(snapshot.id), "restoring twice changes nothing"


def read_back(nb: object) -> object:
    """A notebook as it reads back from a document."""
    doc = pycrdt.Doc()
    load_into(doc, copy.deepcopy(nb))
    return notebook_from_doc(doc)


def test_admin_restores_a_deleted_file(tmp_path: Path) -> None:
    """The admin's "restore the deleted file" action writes the document's last content back
    to its path and makes the document live again."""
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client, override_settings
    from django.utils import timezone

    from jupyter_ydjango.models import Document, Snapshot
    from jupyter_ydjango.store import records

    call_command("migrate", interactive=False, verbosity=0)
    fmt = NotebookFormat()
    path = f"{tmp_path.name}/deleted.ipynb"
    document = Document.objects.create(path=file_location(path, tmp_path.parent),
                                       deleted=timezone.now())
    nb = generated_notebook(3)
    doc = pycrdt.Doc(client_id=0)
    fmt.load_into(doc, copy.deepcopy(nb), path, "0" * 64)
    Snapshot.objects.create(document=document, reason="deleted", state=doc.get_update())
    User.objects.filter(username="undeleter").delete()
    client = Client(HTTP_HOST="localhost")
    client.force_login(User.objects.create_superuser("undeleter", "u@example.com", "pw"))
    response = client.get("/admin/jupyter_ydjango/document/?deleted__isempty=0")
    assert response.status_code == 200 and b"deleted.ipynb" in response.content
    with override_settings(YDJANGO_NOTEBOOK_DIR=str(tmp_path.parent)):
        response = client.post("/admin/jupyter_ydjango/document/",
                               {"action": "restore_deleted", "_selected_action": [document.id]},
                               follow=True)
    assert response.status_code == 200
    assert b"restored to" in response.content
    written = tmp_path / "deleted.ipynb"
    assert [c.source for c in read_notebook(written.read_bytes()).cells] == [
        c.source for c in read_back(nb).cells]
    with override_settings(YDJANGO_NOTEBOOK_DIR=str(tmp_path.parent)):
        info = records.get_document(document.id)
    assert info is not None and info.deleted is None and info.path == path
    assert records.get_document(document.id) is None, "not under this root"


def test_a_deleted_file_is_restored_through_the_contents_manager(tmp_path: Path) -> None:
    """Restoring writes through the rooms' contents manager, here one whose files are not on
    disk at all; a file made at the path meanwhile is kept, the restored one goes beside it."""
    from contents_managers import MemoryContentsManager
    from django.core.management import call_command
    from django.test import override_settings
    from django.utils import timezone

    from jupyter_ydjango.documents.restore import restore_deleted
    from jupyter_ydjango.models import Document, Snapshot
    from jupyter_ydjango.store import records
    from jupyter_ydjango.store.contents import use_contents_manager

    call_command("migrate", interactive=False, verbosity=0)
    manager = MemoryContentsManager()
    manager.files["mem/taken.ipynb"] = ("{}", timezone.now())
    fmt = NotebookFormat()
    nb = generated_notebook(2)
    restored = []
    use_contents_manager(lambda: manager)
    try:
        with override_settings(YDJANGO_NOTEBOOK_DIR=str(tmp_path)):
            for name in ("mem/gone.ipynb", "mem/taken.ipynb"):
                document = Document.objects.create(path=file_location(name, tmp_path),
                                                   deleted=timezone.now())
                doc = pycrdt.Doc(client_id=0)
                fmt.load_into(doc, copy.deepcopy(nb), name, "0" * 64)
                Snapshot.objects.create(document=document, reason="deleted",
                                        state=doc.get_update())
                restored.append(restore_deleted(document.id))
                info = records.get_document(document.id)
                assert info is not None and info.deleted is None and info.path == restored[-1]
    finally:
        use_contents_manager(None)
    assert restored[0] == "mem/gone.ipynb"
    assert restored[1].startswith("mem/taken.restored-") and restored[1].endswith(".ipynb")
    assert manager.files["mem/taken.ipynb"][0] == "{}", "the file made meanwhile is kept"
    for path in restored:
        text, _ = manager.files[path]
        assert [c.source for c in read_notebook(text.encode()).cells] == [
            c.source for c in read_back(nb).cells]
    assert not list(tmp_path.rglob("*.ipynb")), "nothing was written on disk"


def test_a_rename_waits_for_a_concurrent_writer_instead_of_failing(tmp_path: Path) -> None:
    """A rename (read, then write, in one transaction) while another connection is in the
    middle of a write: with SQLite's default deferred transactions the rename's write could
    not get the lock ("database is locked") and the file lost its id; transactions begin
    IMMEDIATE, so it waits its turn."""
    import threading

    from django.core.management import call_command
    from django.db import connection, transaction

    from jupyter_ydjango.models import Document
    from jupyter_ydjango.store import records

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's locking only")
    call_command("migrate", interactive=False, verbosity=0)
    old, new = f"{tmp_path.name}/locked-before.ipynb", f"{tmp_path.name}/locked-after.ipynb"
    document = Document.objects.create(path=file_location(old))
    other = Document.objects.create(path=file_location(f"{tmp_path.name}/other.ipynb"))
    writing, renaming = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:  # a room's log writer, say: a write transaction held a moment
        try:
            with transaction.atomic():
                Document.objects.filter(pk=other.pk).update(path=other.path + "x")
                writing.set()
                renaming.wait(10)
                time.sleep(0.2)  # the rename has begun its transaction by now
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def rename() -> None:
        try:
            writing.wait(10)
            renaming.set()
            assert records.rename(old, new) == 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer), threading.Thread(target=rename)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    document.refresh_from_db()
    assert document.path == file_location(new)


def test_a_file_deleted_while_its_writability_is_checked_is_gone_not_read_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.access answers False for a file deleted since it was found: the room must see it
    gone (the watcher handles the deletion), not tell its clients it became read-only."""
    path = tmp_path / "deleted.ipynb"
    path.write_text("{}")
    assert disk.stat_writable(path)[1] is True
    access = os.access

    def deleted_meanwhile(target, mode):
        if Path(target) == path and path.exists():
            path.unlink()
        return access(target, mode)

    monkeypatch.setattr(disk.os, "access", deleted_meanwhile)
    assert disk.stat_writable(path) is None
