"""Fixtures shared by all test layers: paths, sample lesion photos, and a throwaway
PostgreSQL cluster on 127.0.0.1 for the database and end-to-end tests.

The cluster: TEST_POSTGRES_URL when given; otherwise a fresh cluster from the local
PostgreSQL server binaries (initdb, pg_ctl), started the first time a test asks for it and
removed after the session. PostgreSQL refuses to run as root, so as root the cluster runs
as the `postgres` user.
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

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def lesion_jpegs() -> dict[str, bytes]:
    """Return the sample HAM10000 lesion photos in tests/data/, by file name without .jpg."""
    photos = {path.stem: path.read_bytes() for path in sorted(DATA_DIR.glob("*.jpg"))}
    if not photos:
        pytest.fail(f"no sample lesion photos (*.jpg) in {DATA_DIR}")
    return photos


def _server_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A PostgreSQL URL for a scratch database, or None when no server can be had."""
    if os.environ.get("TEST_POSTGRES_URL"):
        yield os.environ["TEST_POSTGRES_URL"]
        return
    bin_dir = _server_bin()
    if bin_dir is None:
        yield None
        return
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="pgtest-"))
    data = base / "data"
    if as_root:
        shutil.chown(base, "postgres")
    port = _free_port()
    run = lambda *args: subprocess.run([*prefix, *args], check=True, capture_output=True)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "log"),
        "-w",
        "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)
