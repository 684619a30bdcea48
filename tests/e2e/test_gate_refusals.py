"""Every gate stops its update whatever happens to its own reply: here the flood gate.

On main a "busy" notice that failed to send (a 502) raised out of the gate, PTB went on to
the next handler groups, and the photo over the user's rate was downloaded and screened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.inbox import Inbox
from tests.e2e.chat import phone_photo, send_photo
from tests.e2e.conftest import make_settings, start_bot
from tests.fakes.telegram_api import FakeTelegramApi, Fault


async def test_a_photo_over_the_rate_stays_refused_when_the_refusal_fails(
    fresh_api: FakeTelegramApi, tmp_path: Path, lesion_jpegs: dict[str, bytes]
) -> None:
    """One photo a burst: the second is refused by the flood gate, and its "busy" notice
    fails (a 502). It is still refused: never downloaded, never screened."""
    settings = make_settings(
        fresh_api.url, tmp_path / "bot.db", user_photo_burst=1, user_photos_per_hour=1
    )
    async with start_bot(settings) as bot:
        user = 77_001
        await bot.agree(user)
        # One user's photos are screened in turn: the first is answered before the second
        # reaches the flood gate, whose notice then takes the fault.
        send_photo(fresh_api, user, phone_photo(lesion_jpegs))
        await fresh_api.wait_for_text(user)  # the result, after its heatmap
        inbox = bot.application.bot_data.runtime.inbox
        await _settled(inbox)
        assert len(await bot.consultations(user)) == 1
        fresh_api.inject("sendMessage", Fault(502, "Bad Gateway"))
        second = send_photo(fresh_api, user, phone_photo(lesion_jpegs, seed=1))
        await fresh_api.wait_for(lambda: fresh_api.pending_faults("sendMessage") == 0, 30)
        await fresh_api.wait_for(lambda: fresh_api.unconfirmed == 0, within_s=30)
        await _settled(inbox)
        assert second not in fresh_api.download_requests
        assert len(await bot.consultations(user)) == 1


async def _settled(inbox: Inbox) -> None:
    """Wait until every update taken is handled (the inbox signals nothing when it empties)."""
    async with asyncio.timeout(60):
        while inbox.held:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
