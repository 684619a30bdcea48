"""A throwaway PostgreSQL cluster on 127.0.0.1 for the database, privacy and end-to-end tests.

Uses TEST_POSTGRES_URL when given; otherwise starts a fresh cluster from the local
PostgreSQL server binaries (initdb, pg_ctl) for the test session and removes it after.
PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Base


def server_bin() -> Path | None:
    """Where PostgreSQL's server binaries are (None: not installed here)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster of its own in a temporary folder, which a test may stop and
    start again (a database restart) without touching anyone else's."""

    def __init__(self, bin_dir: Path) -> None:
        self._bin = bin_dir
        self._as_root = os.geteuid() == 0
        self._prefix = ["runuser", "-u", "postgres", "--"] if self._as_root else []
        self.base = Path(tempfile.mkdtemp(prefix="pgtest-"))
        self._data = self.base / "data"
        if self._as_root:
            shutil.chown(self.base, "postgres")
        self.port = _free_port()
        initdb = (str(bin_dir / "initdb"), "-D", str(self._data), "-U", "postgres")
        self._run(*initdb, "--auth=trust", "-E", "UTF8")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._prefix, *args], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c fsync=off"
        self._run(
            str(self._bin / "pg_ctl"),
            *("-D", str(self._data), "-l", str(self.base / "log"), "-w", "-o", options),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self._bin / "pg_ctl"), "-D", str(self._data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        stop = (str(self._bin / "pg_ctl"), "-D", str(self._data), "-m", "immediate", "stop")
        subprocess.run([*self._prefix, *stop], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A PostgreSQL URL for a scratch database, or None when no server can be had."""
    if os.environ.get("TEST_POSTGRES_URL"):
        yield os.environ["TEST_POSTGRES_URL"]
        return
    bin_dir = server_bin()
    if bin_dir is None:
        yield None
        return
    cluster = Cluster(bin_dir)
    try:
        yield cluster.url
    finally:
        cluster.remove()


async def drop_everything(engine: AsyncEngine) -> None:
    """Leave the database empty: no tables, no migration history."""
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
