"""Time photo-in to reply-out through the real bot and the fake Telegram Bot API (127.0.0.1).

    python scripts/bench_bot.py [--photos 20]

The bot is built by the same ``build_application`` as ``python -m bot``, polls the fake
server from ``tests/fakes``, screens phone-like photos made from the sample lesions and
logs to a temporary SQLite file. Prints a table: photos one after another (latency), and
all at once from different users (throughput). Speed lives here, not in timed tests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from telegram import Update

from bot.app import build_application

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake Bot API server lives with the tests
from tests.e2e.chat import phone_photo, send_photo  # noqa: E402
from tests.e2e.conftest import RunningBot, make_settings  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramApi  # noqa: E402

DATA = ROOT / "tests" / "data"


async def one(api: FakeTelegramApi, bot: RunningBot, user_id: int, jpeg: bytes) -> float:
    await bot.agree(user_id)
    started = time.perf_counter()
    send_photo(api, user_id, jpeg)
    # The result is one photo (heatmap) and one text; wait for both.
    await api.wait_for(
        lambda: {m.method for m in api.replies_to(user_id)} >= {"sendPhoto", "sendMessage"}
    )
    return (time.perf_counter() - started) * 1000


async def main(photos: int) -> None:
    jpegs = {p.stem: p.read_bytes() for p in DATA.glob("ISIC_*.jpg")}
    api = FakeTelegramApi()
    await api.start()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(api.url, Path(tmp) / "bot.db")
        application = build_application(settings)
        assert application.post_init is not None and application.post_shutdown is not None
        assert application.updater is not None
        await application.initialize()
        await application.post_init(application)
        await application.updater.start_polling(allowed_updates=[Update.MESSAGE])
        await application.start()
        bot = RunningBot(application, settings)
        try:
            photo = [phone_photo(jpegs, seed=i) for i in range(photos)]
            await one(api, bot, 1, photo[0])  # warm-up
            serial = [await one(api, bot, 100 + i, photo[i]) for i in range(photos)]
            started = time.perf_counter()
            await asyncio.gather(*(one(api, bot, 1000 + i, photo[i]) for i in range(photos)))
            burst_s = time.perf_counter() - started
        finally:
            await application.updater.stop()
            await application.stop()
            await application.shutdown()
            await application.post_shutdown(application)
            await api.stop()
    print("| measure | value |")
    print("|---|---|")
    print(
        f"| photos one after another: median photo-to-reply | {statistics.median(serial):.0f} ms |"
    )
    print(f"| photos one after another: slowest | {max(serial):.0f} ms |")
    print(f"| {photos} photos at once from {photos} users: all answered in | {burst_s:.2f} s |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=20)
    asyncio.run(main(parser.parse_args().photos))
