"""One person flooding the bot does not delay anyone else's answer.

The real bot and model, a fake Telegram: one user sends 300 photos at once, then ten
others send one each. The ten are answered within 5 s (p95); the flood gets its burst
screened, one photo after another, and is told "busy" once.

On a machine so loaded that ten photos *without* any flood already take longer than that
(a shared CI runner, a training job on the same cores), the limit is twice what those ten
took. Without the per-user rate the ten would wait behind the whole flood: minutes here,
well over 5 s anywhere.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.replies import for_language
from tests.e2e import images
from tests.e2e.chat import phone_photo, send_photo
from tests.e2e.conftest import RunningBot, make_settings, start_bot
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = for_language("en")
FLOOD_PHOTOS = 300
P95_LIMIT_S = 5.0


def photo_message(api: FakeTelegramApi, jpeg: bytes) -> list[dict[str, object]]:
    """The sizes of one photo message (registered once, sent as often as needed)."""
    thumb, thumb_w, thumb_h = images.resized_jpeg(jpeg, 90)
    width, height = images.size_of(jpeg)
    return [
        api.photo_size(api.add_file(thumb), thumb_w, thumb_h),
        api.photo_size(api.add_file(jpeg), width, height),
    ]


async def ten_users_answered(
    api: FakeTelegramApi, users: range, sizes: list[dict[str, object]]
) -> list[float]:
    """Ten users each send one photo; return the seconds until each result, sorted."""
    sent_at = {}
    for user in users:
        sent_at[user] = time.monotonic()
        api.push_message(user, photo=sizes)
    answers = await asyncio.gather(*(api.wait_for_text(user) for user in users))
    return sorted(
        next(m for m in replies if m.method == "sendMessage").at - sent_at[user]
        for user, replies in zip(users, answers, strict=True)
    )


def p95(latencies: list[float]) -> float:
    return latencies[math.ceil(0.95 * len(latencies)) - 1]  # nearest rank


async def test_one_user_sending_300_photos_does_not_delay_ten_others(
    fake_api: FakeTelegramApi, running_bot: RunningBot, lesion_jpegs: dict[str, bytes]
) -> None:
    """The ten are answered with p95 <= 5 s; the flood gets its burst screened and one notice."""
    flooder, calm, others = 800_001, range(800_201, 800_211), range(800_101, 800_111)
    for user in (flooder, *calm, *others):
        await running_bot.agree(user)
    sizes = photo_message(fake_api, phone_photo(lesion_jpegs))
    baseline = await ten_users_answered(fake_api, calm, sizes)

    for _ in range(FLOOD_PHOTOS):
        fake_api.push_message(flooder, photo=sizes)
    latencies = await ten_users_answered(fake_api, others, sizes)

    limit = max(P95_LIMIT_S, 2 * p95(baseline))
    print(
        f"\nten users, no flood: p50 {baseline[4]:.2f} s, p95 {p95(baseline):.2f} s; "
        f"during a {FLOOD_PHOTOS}-photo flood: p50 {latencies[4]:.2f} s, "
        f"p95 {p95(latencies):.2f} s (limit {limit:.2f} s)"
    )
    assert p95(latencies) <= limit, latencies
    for user in others:
        assert len(await running_bot.consultations(user)) == 1

    burst = running_bot.settings.user_photo_burst
    await fake_api.wait_for_text(flooder, count=burst + 1)
    await asyncio.sleep(1.0)  # anything more would come now
    texts = [m.text for m in fake_api.replies_to(flooder) if m.method == "sendMessage"]
    assert texts.count(EN.text("busy.rate")) == 1
    assert len(texts) == burst + 1
    assert len(await running_bot.consultations(flooder)) == burst


@pytest_asyncio.fixture(loop_scope="module")
async def own_api() -> AsyncIterator[FakeTelegramApi]:
    """A fake Telegram for a bot of the test's own (the module's bot polls the shared one)."""
    api = FakeTelegramApi()
    await api.start()
    yield api
    await api.stop()


async def test_a_full_queue_is_answered_busy_and_nothing_is_downloaded(
    own_api: FakeTelegramApi, tmp_path: Path, lesion_jpegs: dict[str, bytes]
) -> None:
    """A queue of one, its photo held mid-download: the next user's photo gets "busy",
    is neither downloaded nor logged, and the held one is answered once released."""
    fake_api = own_api
    settings = make_settings(fake_api.url, tmp_path / "bot.db", max_queued_photos=1)
    async with start_bot(settings) as bot:
        first, second = 810_001, 810_002
        await bot.agree(first)
        await bot.agree(second)
        held = send_photo(fake_api, first, phone_photo(lesion_jpegs))
        release = fake_api.hold_download(held)
        await fake_api.wait_for(lambda: held in fake_api.download_requests)
        refused = send_photo(fake_api, second, phone_photo(lesion_jpegs, seed=1))
        [busy] = await fake_api.wait_for_text(second)
        assert busy.text == EN.text("busy.queue_full")
        release.set()
        await fake_api.wait_for_text(first)
        assert refused not in fake_api.download_requests
        assert await bot.consultations(second) == []
        assert len(await bot.consultations(first)) == 1
