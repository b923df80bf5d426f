"""Requests per user on the HTTP API: the token buckets, and a real service answering 429."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from django_service import DocServer
from signed import signed

from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.api.rate_limits import RateLimits, requester

#: The service's identity secret (signed headers name the users).
SECRET = "rate-limit-tests-secret-of-at-least-32-bytes"


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    now = [0.0]
    limits = RateLimits(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limits.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limits.take("a") == 0.5, "one more comes in half a second"
    assert limits.take("b") == 0.0, "another user has a bucket of their own"
    now[0] = 0.5
    assert limits.take("a") == 0.0
    assert limits.take("a") > 0
    now[0] = 100.0
    assert [limits.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0], "refilled to the burst"


def test_the_requester_is_the_identity_else_the_session_else_the_address() -> None:
    from jupyter_ydjango.api.identity import SCOPE_KEY

    assert requester({SCOPE_KEY: Identity("ada")}) == "user:ada"
    assert requester({"headers": [(b"cookie", b"a=1; sessionid=abc")],
                      "client": ("10.0.0.1", 5)}) == "session:abc"
    assert requester({"headers": [(b"cookie", b"a=1")], "client": ("10.0.0.1", 5)}) == \
        "address:10.0.0.1"


def test_a_user_over_the_rate_gets_429_and_others_go_on(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    server = DocServer(tmp_path, root, YDJANGO_HTTP_RATE="0.1", YDJANGO_HTTP_BURST="5",
                       YDJANGO_IDENTITY_SECRET=SECRET)
    try:
        path = "api/ydjango/rooms/00000000000000000000000000000000"

        def status_as(name: str) -> tuple[int, dict[str, str], bytes]:
            headers = signed(Identity(name, "read"), SECRET, "GET", path)
            request = urllib.request.Request(f"http://127.0.0.1:{server.port}/{path}",
                                             headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as error:
                return error.code, dict(error.headers), error.read()

        answers = [status_as("looper") for _ in range(8)]
        assert [status for status, _, _ in answers] == [404] * 5 + [429] * 3
        _, headers, body = answers[-1]
        assert int(headers["Retry-After"]) >= 1
        assert "too many requests" in json.loads(body)["error"]
        assert status_as("someone-else")[0] == 404, "another user is not limited"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics",
                                    timeout=10) as response:
            metrics = response.read().decode()
        assert "ydjango_rate_limited_total 3.0" in metrics
    finally:
        server.stop()
