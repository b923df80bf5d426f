"""The command line: ``python -m jupyter_ydjango options`` lists every option of both sides."""

from __future__ import annotations

import subprocess
import sys

from jupyter_ydjango.conf import SETTINGS
from jupyter_ydjango.jupyter.app import YDjango


def test_options_lists_every_option_with_help() -> None:
    out = subprocess.run([sys.executable, "-m", "jupyter_ydjango", "options"],
                         capture_output=True, text=True, check=True).stdout
    for name, trait in YDjango.class_own_traits(config=True).items():
        assert f"c.YDjango.{name} = " in out
        assert trait.help, f"c.YDjango.{name} has no help"
    for name, (_, help_text) in SETTINGS.items():
        assert f"{name} = " in out
        assert help_text.split()[0] in out


def test_workers_need_redis() -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "YDJANGO_REDIS_URL"}
    proc = subprocess.run([sys.executable, "-m", "jupyter_ydjango", "serve", "--workers", "2"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert "YDJANGO_REDIS_URL" in proc.stderr


def test_json_logs() -> None:
    """``YDJANGO_LOG_FORMAT=json``: one JSON object per line, with the worker number."""
    import json
    import os

    code = ("import django; django.setup(); import logging; "
            "logging.getLogger('jupyter_ydjango.test').warning('saved %s', 'x.ipynb')")
    env = {**os.environ, "YDJANGO_LOG_FORMAT": "json", "YDJANGO_WORKER": "2",
           "DJANGO_SETTINGS_MODULE": "jupyter_ydjango.settings"}
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stderr
    record = json.loads(err.strip().splitlines()[-1])
    assert record["message"] == "saved x.ipynb"
    assert record["levelname"] == "WARNING" and record["worker"] == "2"


def test_deleted_and_restore_on_an_empty_database(tmp_path) -> None:
    """``deleted`` lists nothing yet; ``restore`` of an unknown file id says so and fails."""
    import os

    env = {**os.environ, "YDJANGO_DATA_DIR": str(tmp_path), "YDJANGO_NOTEBOOK_DIR": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": "jupyter_ydjango.settings"}
    listed = subprocess.run([sys.executable, "-m", "jupyter_ydjango", "deleted"], env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    assert listed.stdout.strip() == "No deleted documents."
    refused = subprocess.run([sys.executable, "-m", "jupyter_ydjango", "restore", "bogus"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: no deleted document bogus"


def test_serve_refuses_weak_identity_secrets(tmp_path) -> None:
    """An example's secret, or one shorter than 32 bytes: the service does not start, and
    says why and how to make one."""
    import os

    for secret in ("change-me", "a-long-random-secret", "short-but-not-an-example"):
        env = {**os.environ, "YDJANGO_DATA_DIR": str(tmp_path),
               "YDJANGO_IDENTITY_SECRET": secret}
        proc = subprocess.run([sys.executable, "-m", "jupyter_ydjango", "serve", "--port", "1"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode != 0, secret
        assert "YDJANGO_IDENTITY_SECRET" in proc.stderr and "token_urlsafe" in proc.stderr
