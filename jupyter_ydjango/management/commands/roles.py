"""``python -m django roles``: list, grant and revoke roles on documents and folders.

    roles list PATH                     the grants that cover PATH (and whom they cover)
    roles grant user:NAME|group:NAME ROLE PATH
    roles revoke user:NAME|group:NAME PATH

PATH is an API path under the notebook root (``""`` or ``/`` for the root itself). It names
a document when a document of that path is known (a file opened collaboratively at least
once), else a folder; ``--folder`` makes it a folder in any case.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jupyter_ydjango.api.roles import announce_grant_change
from jupyter_ydjango.store import grants
from jupyter_ydjango.store.grants import GrantError, Subject
from jupyter_ydjango.store.paths import PathError, normalize_api_path


class Command(BaseCommand):
    help = "List, grant and revoke roles (viewer, editor, runner) on documents and folders."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="the grants that cover PATH")
        listing.add_argument("path")
        give = actions.add_parser("grant", help="give a user or group a role on PATH")
        give.add_argument("subject", help="user:NAME or group:NAME")
        give.add_argument("role", choices=["viewer", "editor", "runner"])
        give.add_argument("path")
        take = actions.add_parser("revoke", help="take a user's or group's role on PATH away")
        take.add_argument("subject", help="user:NAME or group:NAME")
        take.add_argument("path")
        for sub in (listing, give, take):
            sub.add_argument("--folder", action="store_true",
                             help="PATH is a folder, even where a document has that path")
            sub.add_argument("--by", default="", help="who makes the change (for the history)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            path = options["path"].strip("/")
            api_path = normalize_api_path(path) if path else ""  # "": the root folder
        except PathError as exc:
            raise CommandError(str(exc)) from exc
        location, target = grants.target_of(api_path, folder=options["folder"])
        try:
            if options["action"] == "list":
                self._list(location, target.get("document_id"))
            elif options["action"] == "grant":
                info = grants.grant(Subject.parse(options["subject"]), options["role"],
                                    by=options["by"], **target)
                announce_grant_change(target.get("document_id"), target.get("folder"))
                self.stdout.write(f"{info.subject}: {info.role} on {api_path or '/'}")
            elif not grants.revoke(Subject.parse(options["subject"]), by=options["by"],
                                   **target):
                raise CommandError(f"{options['subject']} has no role on {api_path or '/'}")
            else:
                announce_grant_change(target.get("document_id"), target.get("folder"))
                self.stdout.write(f"{options['subject']}: revoked on {api_path or '/'}")
        except GrantError as exc:
            raise CommandError(str(exc)) from exc

    def _list(self, location: str, document_id: str | None) -> None:
        found = grants.grants_covering(location, document_id)
        if not found:
            self.stdout.write("No grants.")
        for info in found:
            where = "this document" if info.document_id else info.folder + "/"
            self.stdout.write(f"{info.subject}\t{info.role}\t{where}\tby {info.granted_by or '-'}"
                              f"\t{info.updated:%Y-%m-%d %H:%M:%S}")
