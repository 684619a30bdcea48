"""``python -m bot`` as a real process in a test: its environment, start, stop, health port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import ClientSession

from bot.config import Settings
from tests.conftest import REPO_ROOT

BOT_ENV_NAMES = tuple(name.upper() for name in Settings.model_fields)


def bot_env(**values: str) -> dict[str, str]:
    """Return this environment without any bot settings, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if k not in BOT_ENV_NAMES}
    env["PYTHONPATH"] = str(REPO_ROOT)
    # Any free port for /healthz and friends, unless a test picks one.
    return {**env, "HEALTH_PORT": "0", **values}


@contextlib.asynccontextmanager
async def bot_process(
    env: dict[str, str], cwd: Path, log_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m bot`` writing to ``log_path``; killed on the way out if still running."""
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=cwd, env=env, stdout=log, stderr=log
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def stop(process: asyncio.subprocess.Process) -> int:
    """SIGTERM, as a container stop sends; return the exit status."""
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), 120)


async def http_get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` from the bot's health port."""
    async with (
        ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_ready(port: int, process: asyncio.subprocess.Process) -> None:
    """Ask /readyz until it says ready (the process must stay up meanwhile)."""
    async with asyncio.timeout(180):
        while True:
            assert process.returncode is None, "the bot exited during start-up"
            with contextlib.suppress(OSError):
                if (await http_get(port, "/readyz"))[0] == 200:
                    return
            await asyncio.sleep(0.5)  # polling an HTTP endpoint: there is no event to wait on
