"""Container health probe: ``python -m bot.healthcheck`` exits 0 when ``/readyz`` answers 200.

Reads ``HEALTH_PORT`` (and ``HEALTH_LISTEN``) from the environment, as the bot does, so a
deployment that moves the port moves the probe with it (the Dockerfile's HEALTHCHECK and
compose.yaml run this). Standard library only and no settings object: it runs every
30 seconds and needs neither the token nor the database.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = "8080"
TIMEOUT_S = 5.0
# Listening on every interface includes loopback; probe loopback then.
_ANY_ADDRESS = {"", "0.0.0.0", "::"}  # noqa: S104 (compared with, never bound)


def readyz_url(environ: dict[str, str] | os._Environ[str]) -> str:
    """The /readyz URL of the health server these settings describe."""
    host = environ.get("HEALTH_LISTEN", "").strip()
    host = "127.0.0.1" if host in _ANY_ADDRESS else host
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal in a URL
    port = environ.get("HEALTH_PORT", "").strip() or DEFAULT_PORT
    return f"http://{host}:{port}/readyz"


def main() -> int:
    url = readyz_url(os.environ)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (http only)
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"not ready: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
