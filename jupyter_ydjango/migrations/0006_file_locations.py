"""Documents are keyed by their file's absolute location, not by the API path alone.

Until now a document's ``path`` was its API path, relative to the notebook root of whichever
server opened it, so two servers with different roots sharing one database (the embedded
default keeps one per user) took ``a/x.ipynb`` and ``b/x.ipynb`` for one document. The
existing documents are given to the notebook root of the process that migrates (the
``YDJANGO_NOTEBOOK_DIR`` setting; the Jupyter server's root in embedded mode): the first
server started after the upgrade, as the one whose files they were most likely to be.
"""

from django.db import migrations


def _prefix() -> str:
    from jupyter_ydjango.conf import notebook_root

    return notebook_root().as_posix().rstrip("/")


def to_locations(apps, schema_editor):  # noqa: ANN001, ANN201 (Django's signature)
    Document = apps.get_model("jupyter_ydjango", "Document")
    prefix = _prefix()
    for row in Document.objects.exclude(path__startswith="/").only("pk", "path"):
        row.path = f"{prefix}/{row.path}" if row.path else prefix
        row.save(update_fields=["path"])


def to_api_paths(apps, schema_editor):  # noqa: ANN001, ANN201
    Document = apps.get_model("jupyter_ydjango", "Document")
    prefix = _prefix() + "/"
    for row in Document.objects.filter(path__startswith=prefix).only("pk", "path"):
        row.path = row.path[len(prefix):]
        row.save(update_fields=["path"])


class Migration(migrations.Migration):
    dependencies = [
        ("jupyter_ydjango", "0005_authors"),
    ]

    operations = [
        migrations.RunPython(to_locations, to_api_paths),
    ]
