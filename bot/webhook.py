"""The webhook's front door: the secret checked before the body is read, bodies capped.

python-telegram-bot's webhook server (Tornado) reads a whole request body, up to 100 MB,
before it looks at the secret header, and compares the secret with ``!=`` (measured on
main: three unauthenticated 80 MB POSTs, +265 MB). :func:`guard_webhook_server` makes every
Tornado ``HTTPServer`` this process creates from then on (the webhook's, and the health
server's, which has no POST route) check each POST's secret header in constant time as
soon as the headers are in, and refuse bodies over :data:`MAX_BODY_BYTES` from their
Content-Length (chunked ones once they pass it): those are answered at once and their
body is never read. A small body without the secret is drained, never kept, then
answered 403. An accepted one is handed to PTB only after
:func:`bot.updates.parsable_or_stub` checked it, so PTB never logs an update it cannot
parse. Tornado's documented ``Configurable.configure`` is the hook: PTB builds its server
itself and offers none.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any

from tornado import httputil
from tornado.httpserver import HTTPServer

from bot.updates import parsable_or_stub

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  # a header's name
# Telegram's updates are small (a message holds at most 4096 characters of text, a reply
# quotes one more); 1 MiB leaves ample room and bounds what a request may make us hold.
MAX_BODY_BYTES = 2**20


def guard_webhook_server(secret: str, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Make Tornado's HTTPServers created from now on a :class:`GuardedHTTPServer`."""
    HTTPServer.configure(GuardedHTTPServer, webhook_secret=secret, max_body_bytes=max_body_bytes)


class GuardedHTTPServer(HTTPServer):
    """An HTTPServer whose POSTs must carry the webhook secret and a small body."""

    def initialize(  # type: ignore[override]  # Tornado's initialize takes keywords only here
        self, *args: Any, webhook_secret: str, max_body_bytes: int, **kwargs: Any
    ) -> None:
        kwargs["max_body_size"] = max_body_bytes
        super().initialize(*args, **kwargs)
        self._secret = webhook_secret.encode()
        self._max_body_bytes = max_body_bytes

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        inner = super().start_request(server_conn, request_conn)
        return _SecretFirst(inner, request_conn, self._secret, self._max_body_bytes)


class _SecretFirst(httputil.HTTPMessageDelegate):
    """Decides on a POST from its headers; passes it on, checked, only once it is whole."""

    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        connection: httputil.HTTPConnection,
        secret: bytes,
        max_body_bytes: int,
    ) -> None:
        self._inner = inner
        self._connection = connection
        self._secret = secret
        self._max_body_bytes = max_body_bytes
        self._start_line: httputil.RequestStartLine | None = None
        self._headers: httputil.HTTPHeaders | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._refused = False  # answered with an error already
        self._denied = False  # to be answered 403 once its (small) body is drained
        self._held = False
        self._passed_on = False  # the inner delegate has the headers

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        if not isinstance(start_line, httputil.RequestStartLine) or start_line.method != "POST":
            self._passed_on = True
            return self._inner.headers_received(start_line, headers)
        given = headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        authentic = hmac.compare_digest(given, self._secret)
        if _declared_length(headers) > self._max_body_bytes:
            # Answered now; Tornado then closes the connection without reading the body.
            self._refuse(
                HTTPStatus.FORBIDDEN if not authentic else HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            )
            return None
        if not authentic:
            # A small body is drained, never kept, and then answered: a client still sending
            # it would otherwise see the connection close instead of the 403.
            self._denied = True
            return None
        self._held = True
        self._start_line, self._headers = start_line, headers
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self._refused or self._denied:
            return None  # drained, not kept
        if not self._held:
            return self._inner.data_received(chunk)  # not a POST: passed on as it comes
        self._size += len(chunk)
        if self._size > self._max_body_bytes:  # Tornado stops a chunked body past it too
            self._chunks.clear()
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return None
        self._chunks.append(chunk)
        return None

    def finish(self) -> None:
        if self._refused:
            return
        if self._denied:
            self._refuse(HTTPStatus.FORBIDDEN)
            return
        if not self._held:
            self._inner.finish()
            return
        assert self._start_line is not None and self._headers is not None
        body = _checked_body(b"".join(self._chunks))
        self._chunks.clear()
        if body is None:
            self._refuse(HTTPStatus.BAD_REQUEST)
            return
        self._passed_on = True
        self._inner.headers_received(self._start_line, self._headers)
        self._inner.data_received(body)
        self._inner.finish()

    def on_connection_close(self) -> None:
        # A body held here and never passed on: the inner delegate has nothing to close.
        if self._passed_on:
            self._inner.on_connection_close()

    def _refuse(self, status: HTTPStatus) -> None:
        self._refused = True
        self._held = False
        start = httputil.ResponseStartLine("HTTP/1.1", status.value, status.phrase)
        self._connection.write_headers(start, httputil.HTTPHeaders({"Content-Length": "0"}))
        self._connection.finish()


def _declared_length(headers: httputil.HTTPHeaders) -> int:
    try:
        return int(headers.get("Content-Length", "0"))
    except ValueError:
        return 0  # Tornado itself refuses a malformed Content-Length


def _checked_body(body: bytes) -> bytes | None:
    """The posted update if PTB can parse it, else its bare update_id (bot.updates);
    None for what is no update at all (not JSON, no update_id): answered 400 here, so
    PTB never logs it."""
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    checked = parsable_or_stub(raw)
    return None if checked is None else json.dumps(checked).encode()
