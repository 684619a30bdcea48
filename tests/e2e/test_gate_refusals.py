"""Every gate stops its update whatever happens to its own reply: here the flood gate.

On main a "busy" notice that failed to send (a 502) raised out of the gate, PTB went on to
the next handler groups, and the photo over the user's rate was downloaded and screened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.chat import phone_photo, send_photo
from tests.e2e.conftest import make_settings, start_bot
from tests.fakes.telegram_api import FakeTelegramApi, Fault


async def test_a_photo_over_the_rate_stays_refused_when_the_refusal_fails(
    fresh_api: FakeTelegramApi, tmp_path: Path, lesion_jpegs: dict[str, bytes]
) -> None:
    """One photo a burst: the second is refused by the flood gate, and its "busy" notice
    fails (a 502). It is still refused: never downloaded, never screened."""
    settings = make_settings(fresh_api.url, tmp_path / "bot.db", user_photo_burst=1)
    async with start_bot(settings) as bot:
        user = 77_001
        await bot.agree(user)
        first = send_photo(fresh_api, user, phone_photo(lesion_jpegs))
        release = fresh_api.hold_download(first)  # its reply cannot take the fault
        fresh_api.inject("sendMessage", Fault(502, "Bad Gateway"))
        second = send_photo(fresh_api, user, phone_photo(lesion_jpegs, seed=1))
        await fresh_api.wait_for(lambda: fresh_api.pending_faults("sendMessage") == 0, 30)
        await fresh_api.wait_for(lambda: fresh_api.unconfirmed == 0, within_s=30)
        release.set()
        await fresh_api.wait_for(
            lambda: any(m.method == "sendPhoto" for m in fresh_api.replies_to(user)), 60
        )
        inbox = bot.application.bot_data.runtime.inbox
        async with asyncio.timeout(60):
            while inbox.held:  # noqa: ASYNC110  # the inbox signals nothing when it empties
                await asyncio.sleep(0.05)
        assert second not in fresh_api.download_requests
        assert len(await bot.consultations(user)) == 1
