"""Load benchmark: N simulated users send a photo at the same moment, through the fake Bot
API over HTTP on 127.0.0.1, to ``python -m bot`` running as its own process.

    python scripts/bench_load.py [--levels 1 10 100 200] [--worker-threads 2] [--kill 50]
    python scripts/bench_load.py --spread 60      # each level's photos over a minute

With --spread S, a level's N photos arrive evenly over S seconds instead of at once (users
who are all active in the same minute, rather than a burst in the same instant).

The bot runs with its default settings (a fresh SQLite file; WORKER_THREADS and the like can
be overridden with flags). For each level: throughput, reply time p50/p95/p99 (photo sent to
the first text answer), errors (apologies or no answer within --timeout), the bot process's
peak resident memory (its kernel high-water mark, reset before each level), and the mean
screening time per photo (from the bot's /metrics) against the raw model time measured in
the same run (one 224 px crop through the ONNX session, in this process, just before and
just after each level, so a shared machine's changing load affects both alike).
"Database is locked" errors in the bot's log are counted too (SQLite, WAL mode). With
--kill N, N more users send a photo, the bot is killed with SIGKILL once a third are
answered and restarted on the same database; then lost and duplicated consultations are
counted.
Prints a Markdown table; it asserts nothing (speed lives here, not in tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from aiohttp import ClientSession
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake Bot API server lives with the tests
from bot.config import Settings  # noqa: E402
from bot.db.models import utc_now  # noqa: E402
from bot.db.repository import ConsultationRepository, UserRepository  # noqa: E402
from bot.db.session import create_engine, create_session_factory  # noqa: E402
from bot.privacy import user_key  # noqa: E402
from bot.replies import for_language  # noqa: E402
from inference.classifier import OnnxClassifier  # noqa: E402
from tests.e2e import images  # noqa: E402
from tests.fakes.telegram_api import TOKEN, FakeTelegramApi  # noqa: E402

DATA = ROOT / "tests" / "data"
SECRET = "bench-user-key-secret-7c2e9f4a1d6b8305e2c7f9a4d1b6e803"  # noqa: S105  # a throwaway bot's key (32+ random bytes, as the settings require)
APOLOGY = for_language("en").error()


@dataclass(frozen=True)
class Level:
    users: int
    wall_s: float
    replies_ms: list[float]
    errors: int
    peak_rss_mb: float
    processing_ms: float | None
    model_ms: float = float("nan")  # raw model time around this level


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], percent: float) -> float:
    return float(np.percentile(values, percent)) if values else float("nan")


def reset_peak_rss(pid: int) -> None:
    """Set the process's peak resident memory (VmHWM) back to what is resident now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


async def metric_sum(port: int, name: str, labels: dict[str, str]) -> float:
    async with ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def stage_mean_ms(port: int, stage: str) -> float:
    """Mean time of one screening stage over the whole run, from the bot's histogram."""
    labels = {"stage": stage}
    count = await metric_sum(port, "bot_stage_seconds_count", labels)
    return await metric_sum(port, "bot_stage_seconds_sum", labels) / count * 1000 if count else 0


async def wait_ready(port: int, process: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(300):
        while True:
            if process.returncode is not None:
                raise RuntimeError("the bot exited during start-up")
            with contextlib.suppress(OSError):
                async with (
                    ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/readyz") as response,
                ):
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)


class RawModel:
    """The model alone, as the bot runs it (one thread), timed in this process."""

    def __init__(self) -> None:
        self._classifier = OnnxClassifier(None, threads=1)
        size = self._classifier.metadata.input_size
        rng = np.random.default_rng(0)
        self._crop = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        self._classifier.predict(self._crop)

    def median_ms(self, repeats: int = 20) -> float:
        """Median time of one crop through the model, now."""
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            self._classifier.predict(self._crop)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)


async def seed_consent(database_url: str, user_ids: range) -> None:
    """Store the users' consent directly (the consent flow has its own tests)."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine).begin() as session:
            users = UserRepository(session)
            for user_id in user_ids:
                user = await users.get_or_add(user_key(user_id, SECRET.encode()))
                user.consented_at, user.language = utc_now(), "en"
    finally:
        await engine.dispose()


async def run_level(
    api: FakeTelegramApi,
    pid: int,
    health_port: int,
    database_url: str,
    users: range,
    photos: list[tuple[dict[str, object], dict[str, object]]],
    timeout_s: float,
    spread_s: float = 0.0,
) -> Level:
    await seed_consent(database_url, users)
    reset_peak_rss(pid)
    total = {"stage": "total"}
    seconds_before = await metric_sum(health_port, "bot_stage_seconds_sum", total)
    count_before = await metric_sum(health_port, "bot_stage_seconds_count", total)
    first_sent = len(api.sent)
    wanted = set(users)
    sent_at: dict[int, float] = {}
    started = time.monotonic()
    for n, user in enumerate(users):
        if spread_s:
            await asyncio.sleep(max(0.0, started + n * spread_s / len(users) - time.monotonic()))
        small, full = photos[n % len(photos)]
        sent_at[user] = time.monotonic()
        api.push_message(user, "en", photo=[small, full])

    def answered() -> dict[int, tuple[float, str]]:
        out: dict[int, tuple[float, str]] = {}
        for message in api.sent[first_sent:]:
            if message.method == "sendMessage" and message.chat_id in wanted:
                out.setdefault(message.chat_id, (message.at, message.text or ""))
        return out

    with contextlib.suppress(TimeoutError):
        await api.wait_for(lambda: len(answered()) == len(wanted), timeout_s)
    wall = time.monotonic() - started
    replies = answered()
    errors = len(wanted) - len(replies) + sum(text == APOLOGY for _, text in replies.values())
    times = [(at - sent_at[user]) * 1000 for user, (at, _) in replies.items()]
    await asyncio.sleep(0.5)  # the last consultation is logged just after its reply
    seconds = await metric_sum(health_port, "bot_stage_seconds_sum", total) - seconds_before
    count = await metric_sum(health_port, "bot_stage_seconds_count", total) - count_before
    return Level(
        users=len(wanted),
        wall_s=wall,
        replies_ms=times,
        errors=errors,
        peak_rss_mb=vm_kib(pid, "VmHWM:") / 1024,
        processing_ms=seconds / count * 1000 if count else None,
    )


@contextlib.asynccontextmanager
async def running_bot(
    api: FakeTelegramApi,
    database_url: str,
    health_port: int,
    args: argparse.Namespace,
    log_path: Path,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m bot`` with default settings, ready; SIGTERM on the way out (if alive)."""
    bot_names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in bot_names}
    env |= {
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": api.url,
        "DATABASE_URL": database_url,
        "USER_KEY_SECRET": SECRET,
        "HEALTH_PORT": str(health_port),
        "LOG_LEVEL": "WARNING",
        "WORKER_THREADS": str(args.worker_threads),
    }
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=log_path.parent, env=env, stdout=log, stderr=log
        )
        try:
            await wait_ready(health_port, process)
            yield process
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 120)


@dataclass(frozen=True)
class FloodReport:
    photos: int
    flood_s: float  # from the first of the flood to its last answer
    flood_answered: int
    others_ms: list[float]  # each of the ten: photo sent to its answer
    errors: int


async def run_flood(
    api: FakeTelegramApi,
    database_url: str,
    photos: list[tuple[dict[str, object], dict[str, object]]],
    count: int,
    timeout_s: float,
) -> FloodReport:
    """One user uploads ``count`` photos at once, then ten others send one each."""
    worker, others = 3_000_000, range(3_000_001, 3_000_011)
    await seed_consent(database_url, range(worker, others.stop))
    first_sent = len(api.sent)
    started = time.monotonic()
    for n in range(count):
        small, full = photos[n % len(photos)]
        api.push_message(worker, "en", photo=[small, full], media_group_id=f"album-{n // 10}")
    sent_at = {}
    for n, user in enumerate(others):
        small, full = photos[n % len(photos)]
        sent_at[user] = time.monotonic()
        api.push_message(user, "en", photo=[small, full])

    def texts(user: int) -> list[tuple[float, str]]:
        return [
            (m.at, m.text or "")
            for m in api.sent[first_sent:]
            if m.method == "sendMessage" and m.chat_id == user
        ]

    def done() -> bool:
        return len(texts(worker)) >= count and all(texts(user) for user in others)

    with contextlib.suppress(TimeoutError):
        await api.wait_for(done, timeout_s)
    flood = texts(worker)
    answers = {user: texts(user)[0] for user in others if texts(user)}
    errors = sum(text == APOLOGY for _, text in [*flood, *answers.values()])
    errors += count - len(flood) + len(others) - len(answers)
    return FloodReport(
        photos=count,
        flood_s=(flood[-1][0] if flood else time.monotonic()) - started,
        flood_answered=len(flood),
        others_ms=sorted((at - sent_at[user]) * 1000 for user, (at, _) in answers.items()),
        errors=errors,
    )


@dataclass(frozen=True)
class KillReport:
    users: int
    answered_before_kill: int
    answered: int
    lost: int
    duplicated: int


async def kill_and_restart(
    api: FakeTelegramApi,
    database_url: str,
    args: argparse.Namespace,
    tmp: Path,
    photos: list[tuple[dict[str, object], dict[str, object]]],
) -> KillReport:
    """``args.kill`` users send a photo; kill -9 once a third are answered; restart on the
    same database; then count who got an answer and consultations per user."""
    users = range(2_000_000, 2_000_000 + args.kill)
    wanted = set(users)

    def answered() -> set[int]:
        return {m.chat_id for m in api.sent if m.method == "sendMessage" and m.chat_id in wanted}

    port = free_port()
    async with running_bot(api, database_url, port, args, tmp / "kill.log") as process:
        await seed_consent(database_url, users)
        for n, user in enumerate(users):
            small, full = photos[n % len(photos)]
            api.push_message(user, "en", photo=[small, full])
        with contextlib.suppress(TimeoutError):
            await api.wait_for(lambda: len(answered()) >= len(wanted) // 3, args.timeout)
        process.kill()  # SIGKILL: no shutdown, nothing flushed
        await process.wait()
        before = len(answered())
    async with running_bot(api, database_url, free_port(), args, tmp / "kill.log"):
        # Until everyone is answered, or nothing more comes for a minute (photos lost).
        while len(answered()) < len(wanted):
            so_far = len(answered())
            try:
                await api.wait_for(lambda: len(answered()) > so_far, 60)  # noqa: B023
            except TimeoutError:
                break
        await asyncio.sleep(1.0)  # the last answers' consultations are being logged
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session:
            counts = [
                len(await ConsultationRepository(session).for_user(user_key(u, SECRET.encode())))
                for u in users
            ]
    finally:
        await engine.dispose()
    return KillReport(
        users=len(wanted),
        answered_before_kill=before,
        answered=len(answered()),
        lost=sum(c == 0 for c in counts),
        duplicated=sum(c > 1 for c in counts),
    )


async def main(args: argparse.Namespace) -> None:
    # Timed just before and just after each level, on the same (possibly shared) cores the
    # bot is measured on, so the ratio compares like with like.
    model = RawModel()
    jpegs = sorted(DATA.glob("ISIC_*.jpg"))
    api = FakeTelegramApi()
    await api.start()
    photos = []
    for n in range(16):  # a few different photos, each registered once, sent by many users
        jpeg = images.phone_like_photo(jpegs[n % len(jpegs)].read_bytes(), seed=n)
        thumb, tw, th = images.resized_jpeg(jpeg, 90)
        width, height = images.size_of(jpeg)
        photos.append(
            (
                api.photo_size(api.add_file(thumb), tw, th),
                api.photo_size(api.add_file(jpeg), width, height),
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bot.db'}"
        health_port = free_port()
        log_path = Path(tmp) / "bot.log"
        levels = []
        async with running_bot(api, database_url, health_port, args, log_path) as process:
            first_user = 1_000_000
            for n in args.levels:
                users = range(first_user, first_user + n)
                first_user += n
                before = model.median_ms()
                level = await run_level(
                    api,
                    process.pid,
                    health_port,
                    database_url,
                    users,
                    photos,
                    args.timeout,
                    args.spread,
                )
                levels.append(replace(level, model_ms=(before + model.median_ms()) / 2))
            flood = (
                await run_flood(api, database_url, photos, args.flood, args.timeout)
                if args.flood
                else None
            )
            stages = {
                stage: await stage_mean_ms(health_port, stage)
                for stage in ("decode", "localise", "quality", "classify", "heatmap", "total")
            }
        kill = (
            await kill_and_restart(api, database_url, args, Path(tmp), photos)
            if args.kill
            else None
        )
        log_text = log_path.read_text(errors="replace")
        locked = log_text.count("database is locked")
        if args.keep_log is not None:
            args.keep_log.write_text(log_text)
    await api.stop()

    print(f"WORKER_THREADS={args.worker_threads}; 'database is locked' in the bot's log: {locked}")
    print(
        "Mean per stage over all levels: "
        + ", ".join(f"{stage} {ms:.0f} ms" for stage, ms in stages.items())
    )
    if kill is not None:
        print(
            f"kill -9 with {kill.users} photos in flight ({kill.answered_before_kill} answered "
            f"before the kill), then a restart: {kill.answered} answered in all, "
            f"{kill.lost} consultations lost, {kill.duplicated} users with duplicates"
        )
    if flood is not None:
        others = flood.others_ms
        print(
            f"Flood: one user's {flood.photos} photos at once, then 10 others one each: the 10 "
            f"answered in p50 {percentile(others, 50):.0f} ms, p95 {percentile(others, 95):.0f} "
            f"ms, max {max(others, default=float('nan')):.0f} ms; the {flood.photos} took "
            f"{flood.flood_s:.1f} s ({flood.flood_answered} answered; the 10's slowest is "
            f"{max(others, default=float('nan')) / 1000 / flood.flood_s:.2f} of that); "
            f"errors {flood.errors}"
        )
    print()
    users_heading = f"users (photos over {args.spread:g} s)" if args.spread else "users at once"
    print(
        f"| {users_heading} | throughput (photos/s) | reply p50 | p95 | p99 | errors "
        "| bot peak RSS | screening per photo | raw model time | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for level in levels:
        processing = level.processing_ms or float("nan")
        p50, p95, p99 = (percentile(level.replies_ms, p) for p in (50, 95, 99))
        print(
            f"| {level.users} | {level.users / level.wall_s:.2f} "
            f"| {p50:.0f} ms | {p95:.0f} ms | {p99:.0f} ms | {level.errors} "
            f"| {level.peak_rss_mb:.0f} MB | {processing:.0f} ms | {level.model_ms:.1f} ms "
            f"| {processing / level.model_ms:.1f}x |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 10, 100, 200])
    parser.add_argument("--worker-threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per level")
    parser.add_argument(
        "--kill", type=int, default=0, help="then kill -9 the bot with this many photos in flight"
    )
    parser.add_argument(
        "--spread", type=float, default=0.0, help="seconds over which a level's photos arrive"
    )
    parser.add_argument(
        "--flood", type=int, default=0, help="then one user's N photos at once beside 10 others"
    )
    parser.add_argument("--keep-log", type=Path, help="copy the bot's log (WARNING and up) here")
    asyncio.run(main(parser.parse_args()))
