"""``/healthz``, ``/readyz`` and ``/metrics`` on a port of their own, in polling and webhook mode.

A port of its own because in polling mode there is no web server at all, and in webhook
mode the webhook port faces Telegram (through a proxy) while these face the orchestrator
and Prometheus. Tornado serves them, as it already serves python-telegram-bot's webhook.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from bot import metrics

logger = logging.getLogger(__name__)

# Returns None when ready, otherwise a short reason (never a secret or a URL).
ReadinessCheck = Callable[[], Awaitable[str | None]]


class _Healthz(RequestHandler):
    def get(self) -> None:
        # The event loop answers: the process is up and not stuck.
        self.write("ok\n")


class _Readyz(RequestHandler):
    def initialize(self, check: ReadinessCheck) -> None:
        self._check = check

    async def get(self) -> None:
        problem = await self._check()
        if problem is not None:
            self.set_status(503)
            self.write(f"not ready: {problem}\n")
        else:
            self.write("ready\n")


class _Metrics(RequestHandler):
    def get(self) -> None:
        body, content_type = metrics.render()
        self.set_header("Content-Type", content_type)
        self.write(body)


class HealthServer:
    """The three endpoints, listening until :meth:`stop`."""

    def __init__(self, listen: str, port: int, check: ReadinessCheck) -> None:
        self._listen, self._requested_port = listen, port
        self._app = Application(
            [
                (r"/healthz", _Healthz),
                (r"/readyz", _Readyz, {"check": check}),
                (r"/metrics", _Metrics),
            ]
        )
        self._server: HTTPServer | None = None
        self.port = 0

    async def start(self) -> None:
        """Listen (port 0: any free port, as :attr:`port` then says)."""
        sockets = bind_sockets(self._requested_port, self._listen)
        self.port = int(sockets[0].getsockname()[1])
        self._server = HTTPServer(self._app)
        self._server.add_sockets(sockets)
        logger.info("Health and metrics on %s:%d", self._listen, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None
