"""Write docs/configuration.md from the code: the Jupyter extension's traitlets, the Django
app's settings (``jupyter_ydjango.conf.SETTINGS``) and the embedded settings' environment
variables (``jupyter_ydjango.conf.ENVIRONMENT``); ``python -m jupyter_ydjango options`` prints
the same.

    python docs/generate_reference.py           # write docs/configuration.md
    python docs/generate_reference.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parent / "configuration.md"


def cell(text: Any) -> str:
    """Text for a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: Any) -> str:
    return f"`{cell(text)}`"


def trait_default(cls: type, name: str, trait: Any) -> str:
    """The default of a trait; computed defaults are described in the trait's help."""
    if name in getattr(cls, "_trait_default_generators", {}):
        return "computed (see meaning)"
    return code(repr(trait.default_value))


def render() -> str:
    """The Markdown text of the reference."""
    from jupyter_ydjango.conf import ENVIRONMENT, SETTINGS
    from jupyter_ydjango.jupyter.app import YDjango

    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from the code by docs/generate_reference.py: do not edit by hand. "
        "A test fails when this file is out of date. -->",
        "",
        "jupyter-ydjango has two sides, each configured on its own (see "
        "[deploying.md](deploying.md) for how they fit together). "
        "`python -m jupyter_ydjango options` prints this reference in a terminal.",
        "",
        "## Jupyter server extension",
        "",
        "Options of the Jupyter server extension (`YDjango`): `c.YDjango.<name> = ...` in "
        "`jupyter_server_config.py`, or `--YDjango.<name>=...` on the command line of "
        "`jupyter lab` / `jupyter server`.",
        "",
        "| option | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, trait in sorted(YDjango.class_own_traits(config=True).items()):
        lines.append(f"| {code('c.YDjango.' + name)} | {type(trait).__name__} "
                     f"| {trait_default(YDjango, name, trait)} | {cell(trait.help)} |")
    lines += [
        "",
        "## Django side: settings",
        "",
        "Settings of the Django app. In your own Django project, set them in its settings "
        "module (a setting left out takes the default). The embedded settings, "
        "`jupyter_ydjango.settings` (used by the Jupyter extension when it runs the Django "
        "side in-process, and by `python -m jupyter_ydjango serve`), read each one from the "
        "environment variable of the same name; in embedded mode the extension sets "
        "`YDJANGO_NOTEBOOK_DIR` (the server's root directory), `YDJANGO_SAVE_DELAY`, "
        "`YDJANGO_ROOM_UNLOAD_DELAY` and `YDJANGO_MAX_MESSAGE_SIZE` from its own options.",
        "",
        "| setting | default | meaning |",
        "|---|---|---|",
    ]
    for name, (default, help_text) in SETTINGS.items():
        lines.append(f"| {code(name)} | {code(repr(default))} | {cell(help_text)} |")
    lines += [
        "",
        "## Embedded settings: more environment variables",
        "",
        "Read by `jupyter_ydjango.settings` only; in your own Django project, configure the "
        "database, the channel layer, the secret key and logging the Django way.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, (default, help_text) in ENVIRONMENT.items():
        lines.append(f"| {code(name)} | {code(default)} | {cell(help_text)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/configuration.md from the code.")
    parser.add_argument("--check", action="store_true",
                        help="do not write: exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    current = TARGET.read_text() if TARGET.exists() else ""
    if args.check:
        if current != text:
            print(f"{TARGET} is out of date: run python docs/generate_reference.py",
                  file=sys.stderr)
            return 1
        return 0
    if current != text:
        TARGET.write_text(text)
        print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
