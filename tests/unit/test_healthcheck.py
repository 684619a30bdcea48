"""The container probe (``python -m bot.healthcheck``) asks /readyz on HEALTH_PORT."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from bot.healthcheck import readyz_url
from tests.conftest import REPO_ROOT


class _Readyz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[HTTPServer]:
    handler = type("Handler", (_Readyz,), {"status": getattr(request, "param", 200)})
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def probe(**environment: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTH_")} | environment
    result = subprocess.run(
        [sys.executable, "-m", "bot.healthcheck"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode


def test_ready_on_the_configured_port(server: HTTPServer) -> None:
    port = str(server.server_address[1])
    assert probe(HEALTH_PORT=port, HEALTH_LISTEN="0.0.0.0") == 0


@pytest.mark.parametrize("server", [503], indirect=True)
def test_not_ready_when_readyz_says_so(server: HTTPServer) -> None:
    assert probe(HEALTH_PORT=str(server.server_address[1])) == 1


def test_not_ready_when_nothing_listens_on_the_configured_port(server: HTTPServer) -> None:
    """A server on another port does not count: the probe follows HEALTH_PORT."""
    free = HTTPServer(("127.0.0.1", 0), _Readyz)
    unused = free.server_address[1]
    free.server_close()
    assert probe(HEALTH_PORT=str(unused)) == 1


def test_url_follows_the_listen_address() -> None:
    assert readyz_url({}) == "http://127.0.0.1:8080/readyz"
    assert readyz_url({"HEALTH_PORT": "9100", "HEALTH_LISTEN": "0.0.0.0"}) == (
        "http://127.0.0.1:9100/readyz"
    )
    assert readyz_url({"HEALTH_LISTEN": "10.0.0.5"}) == "http://10.0.0.5:8080/readyz"
    assert readyz_url({"HEALTH_LISTEN": "::1"}) == "http://[::1]:8080/readyz"


def test_the_image_probes_with_it() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "bot.healthcheck"]' in dockerfile
    assert ":8080/readyz" not in dockerfile
