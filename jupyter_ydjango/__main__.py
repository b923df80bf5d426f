"""Command line: ``python -m jupyter_ydjango serve`` runs the Django Channels service;
``deleted`` and ``restore`` list and bring back documents whose file was deleted."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def serve(args: argparse.Namespace) -> None:
    """Apply migrations, then run daphne on the ASGI application (in N workers with
    ``--workers N``)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jupyter_ydjango.settings")
    from jupyter_ydjango.api.identity import secret_problem

    secret = os.environ.get("YDJANGO_IDENTITY_SECRET", "")
    if secret and secret_problem(secret):
        sys.exit(f"YDJANGO_IDENTITY_SECRET: {secret_problem(secret)}; the service does not "
                 "start with it")
    if args.workers > 1:
        from jupyter_ydjango.project.workers import check_can_share_rooms

        check_can_share_rooms()
    import django
    from django.core.management import call_command

    django.setup()
    if not args.no_migrate:
        call_command("migrate", interactive=False, verbosity=0)
    if args.workers > 1:
        from jupyter_ydjango.project.workers import supervise

        sys.exit(supervise(args.host, args.port, args.workers, []))

    from daphne.cli import CommandLineInterface
    from twisted.internet import reactor

    from jupyter_ydjango.conf import get_setting
    from jupyter_ydjango.heap import freeze_startup_heap
    _flush_rooms_at_shutdown()
    log = logging.getLogger("jupyter_ydjango.heap")
    reactor.callWhenRunning(lambda: log.info("%s", freeze_startup_heap()))

    limit = get_setting("YDJANGO_MAX_MESSAGE_SIZE")
    cli = CommandLineInterface()
    if args.control is not None:  # a worker of serve --workers N: the supervisor hands
        # it the connections of its rooms (and it listens on a Unix socket of its own)
        from jupyter_ydjango.project import asgi  # noqa: F401  (loaded before serving: connections wait less)
        from jupyter_ydjango.project.handoff import Handoff

        handoff = Handoff(args.control, int(os.environ.get("YDJANGO_WORKER", "0")),
                          lambda: cli.server.http_factory)
        reactor.callWhenRunning(handoff.start)
        where = ["-u", args.unix_socket]
    else:
        where = ["--bind", args.host, "--port", str(args.port)]
    cli.run([
        *where,
        # Our consumer enforces YDJANGO_MAX_MESSAGE_SIZE; daphne's own cap must not be lower.
        "--websocket-max-message-size", str(limit + 1024),
        "--websocket-max-frame-size", str(limit + 1024),
        # Rooms stay open as long as people edit: no daphne-side session timeout.
        "--websocket_timeout", "-1",
        "jupyter_ydjango.asgi:application",
    ])


def _flush_rooms_at_shutdown() -> None:
    """On SIGTERM/SIGINT, unload every room (write its log, save its file) before exiting."""
    import asyncio

    import daphne.server  # noqa: F401  (installs the asyncio reactor daphne runs on)
    from twisted.internet import defer, reactor

    from jupyter_ydjango.project.shutdown import unload_everything

    def before_shutdown() -> defer.Deferred:
        return defer.Deferred.fromFuture(asyncio.ensure_future(unload_everything()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


def options() -> None:
    """Print every option: the Jupyter side's ``c.YDjango.*`` and the Django side's
    ``YDJANGO_*`` settings, with defaults and help."""
    import textwrap

    from jupyter_ydjango.conf import ENVIRONMENT, SETTINGS
    from jupyter_ydjango.jupyter.app import YDjango

    print("Jupyter server extension (c.YDjango.<name> or --YDjango.<name>=...)\n")
    for name, trait in sorted(YDjango.class_own_traits(config=True).items()):
        print(f"c.YDjango.{name} = {trait.default_value!r}")
        print(textwrap.indent(textwrap.fill(trait.help, 88), "    "), end="\n\n")
    print("Django side (Django settings; environment variables for the embedded settings)\n")
    for name, (default, help_text) in SETTINGS.items():
        print(f"{name} = {default!r}")
        print(textwrap.indent(textwrap.fill(help_text, 88), "    "), end="\n\n")
    print("Embedded settings only (environment variables)\n")
    for name, (default, help_text) in ENVIRONMENT.items():
        print(f"{name} (default: {default})")
        print(textwrap.indent(textwrap.fill(help_text, 88), "    "), end="\n\n")


def deleted() -> None:
    """List the documents whose file was deleted (their content can be restored)."""
    _setup_django()
    from jupyter_ydjango.store.records import deleted_documents

    documents = deleted_documents()
    if not documents:
        print("No deleted documents.")
    for info in documents:
        assert info.deleted is not None
        print(f"{info.id}  {info.deleted:%Y-%m-%d %H:%M:%S %Z}  {info.path}")


def restore(args: argparse.Namespace) -> None:
    """Write a deleted document's last content back to a file."""
    _setup_django()
    from jupyter_ydjango.documents.restore import RestoreError, restore_deleted

    try:
        path = restore_deleted(args.file_id)
    except RestoreError as exc:
        sys.exit(f"error: {exc}")
    print(f"restored to {path}")


def roles(args: argparse.Namespace) -> None:
    """List, grant and revoke roles (the ``roles`` management command)."""
    _setup_django()
    from django.core.management import CommandError, call_command

    try:
        call_command("roles", *args.arguments)
    except CommandError as exc:
        sys.exit(f"error: {exc}")


def _setup_django() -> None:
    """Set Django up, with the database migrated (as ``serve`` and the Jupyter side do)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jupyter_ydjango.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_ydjango")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the Django Channels service (daphne)")
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve_parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve_parser.add_argument("--no-migrate", action="store_true",
                              help="do not apply database migrations first")
    serve_parser.add_argument("--workers", type=int, default=1,
                              help="worker processes, each room in one of them "
                                   "(needs YDJANGO_REDIS_URL when more than 1)")
    serve_parser.add_argument("--control", type=int, default=None, help=argparse.SUPPRESS)
    serve_parser.add_argument("--unix-socket", default=None, help=argparse.SUPPRESS)
    commands.add_parser("options", help="print every option with its default and help")
    commands.add_parser("deleted", help="list the documents whose file was deleted")
    restore_parser = commands.add_parser(
        "restore", help="write a deleted document's last content back to a file")
    restore_parser.add_argument("file_id", help="the document's file id (see `deleted`)")
    roles_parser = commands.add_parser(
        "roles", help="list, grant and revoke roles: roles list PATH | roles grant "
                      "user:NAME|group:NAME viewer|editor|runner PATH | roles revoke "
                      "user:NAME|group:NAME PATH (--folder: PATH is a folder)")
    roles_parser.add_argument("arguments", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args)
    elif args.command == "options":
        options()
    elif args.command == "deleted":
        deleted()
    elif args.command == "restore":
        restore(args)
    elif args.command == "roles":
        roles(args)


if __name__ == "__main__":
    main(sys.argv[1:])
