"""/history, naming and comparing a spot over time, and /forget deleting everything."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.db.models import Consultation, FollowUp, User, utc_now
from bot.replies import for_language
from bot.scheduler import send_due
from bot.tracking import Change, Direction
from inference.types import Risk
from tests.e2e.chat import last_text, phone_photo, press, send_photo
from tests.e2e.conftest import RunningBot
from tests.fakes.telegram_api import FakeTelegramApi

pytestmark = pytest.mark.asyncio(loop_scope="module")

EN = for_language("en")
LABEL = "left shoulder mole"
PAD_DIR = Path(__file__).resolve().parents[1] / "data" / "pad"


async def assessed_photo(
    api: FakeTelegramApi,
    bot: RunningBot,
    user_id: int,
    jpeg: bytes,
    text_count: int,
    caption: str | None = None,
) -> tuple[str, Consultation]:
    """Send a photo the model can assess; return the reply text and the new row."""
    send_photo(api, user_id, jpeg, caption=caption)
    reply = await last_text(api, user_id, text_count)
    row = (await bot.consultations(user_id))[0]
    assert row.status == "assessed", row  # the sample passes the quality gate
    return reply.text or "", row


async def test_history_lists_date_risk_and_the_name_given(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """After two photos, /history shows both, newest first, with date, risk and name."""
    fake_api.push_text(user_id, "/history")
    empty = await last_text(fake_api, user_id, 1)
    assert empty.text == EN.text("history.empty")

    photo = phone_photo(lesion_jpegs)
    await assessed_photo(fake_api, running_bot, user_id, photo, 2, caption="Left  Shoulder mole")
    await assessed_photo(fake_api, running_bot, user_id, photo, 3)
    fake_api.push_text(user_id, "/history")
    reply = await last_text(fake_api, user_id, 4)

    newest, oldest = await running_bot.consultations(user_id)
    assert oldest.lesion_label == LABEL  # normalised: one space, lower case
    lines = (reply.text or "").split("\n")
    assert lines[0] == "Your checks, newest first:"
    today = EN.date(utc_now())
    assert lines[1] == f"{today}: {EN.text(f'level.{newest.risk}')} risk"
    assert lines[2] == f"{today}: {EN.text(f'level.{oldest.risk}')} risk – “{LABEL}”"


async def test_second_photo_of_a_named_spot_is_compared_with_the_first(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Same name in the caption: risk and probability change, with advice if it got worse."""
    first_text, first = await assessed_photo(
        fake_api, running_bot, user_id, phone_photo(lesion_jpegs, seed=1), 1, caption=LABEL
    )
    assert EN.text("track.first", label=LABEL) in first_text
    assert EN.text("track.ask") not in first_text  # already named

    second_text, second = await assessed_photo(
        fake_api, running_bot, user_id, phone_photo(lesion_jpegs, seed=2), 2, caption=LABEL
    )
    assert first.malignant_probability is not None and second.malignant_probability is not None
    change = Change(
        label=LABEL,
        before_at=first.created_at,
        risk_before=Risk(first.risk),
        risk_after=Risk(second.risk),
        probability_before=first.malignant_probability,
        probability_after=second.malignant_probability,
        same_spot_delta=running_bot.application.bot_data.runtime.screening.metadata.same_spot_delta,
    )
    comparison = EN.comparison(change)
    assert comparison in second_text
    assert f"Compared with the photo of “{LABEL}” from {EN.date(first.created_at)}:" in second_text
    # Levels and estimates are shown only for a change beyond the same-spot variation.
    shown = change.direction in (Direction.WORSE, Direction.LOWER)
    assert (f"• risk: {first.risk} → {second.risk}" in second_text) is shown


@pytest.fixture
def pad_photos() -> dict[str, bytes]:
    """Real phone photos: a basal cell carcinoma (high) and a naevus (medium)."""
    return {path.stem: path.read_bytes() for path in PAD_DIR.glob("*.jpg")}


async def test_a_lower_result_of_a_named_spot_keeps_the_higher_advice(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int, pad_photos: dict[str, bytes]
) -> None:
    """A basal cell carcinoma photo (high), then a naevus photo (low) with the same name:
    the second reply still gives the high-risk advice and says why; the first result stands
    until a doctor's answer says otherwise."""
    high_photo, lower_photo = pad_photos["PAT_145_216_110"], pad_photos["PAT_1364_1246_447"]
    _, first = await assessed_photo(fake_api, running_bot, user_id, high_photo, 1, "right calf")
    second_text, second = await assessed_photo(
        fake_api, running_bot, user_id, lower_photo, 2, "Right calf"
    )
    assert (first.risk, second.risk) == ("high", "low"), "the photos no longer differ"
    note = EN.text(
        "advice.note.held", date=EN.date(first.created_at), label="right calf", level="high"
    )
    assert note in second_text
    assert EN.text("advice.high") in second_text
    assert EN.text("advice.low") not in second_text
    assert EN.text("risk.low") in second_text  # the photo's own result, as it is


async def test_replying_to_a_result_names_the_spot(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """An unnamed result invites a name; a reply to it stores the name on that check."""
    text, row = await assessed_photo(fake_api, running_bot, user_id, phone_photo(lesion_jpegs), 1)
    assert text.endswith(EN.text("track.ask"))
    result = await last_text(fake_api, user_id, 1)
    # The fake API sees the message as the bot sends it, before the bot has recorded
    # which message the result was; a person reads it before replying.
    for _ in range(100):
        if (await running_bot.consultations(user_id))[0].result_message_id is not None:
            break
        await asyncio.sleep(0.02)

    fake_api.push_text(user_id, "Mole on my back", reply_to=result)
    reply = await last_text(fake_api, user_id, 2)
    assert reply.text == "\n\n".join(
        [
            EN.text("track.named", label="mole on my back"),
            EN.text("track.first", label="mole on my back"),
        ]
    )
    [named] = await running_bot.consultations(user_id)
    assert named.id == row.id and named.lesion_label == "mole on my back"


async def count(bot: RunningBot, model: type, key: str) -> int:
    column = model.user_key  # type: ignore[attr-defined]
    async with bot.application.bot_data.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).where(column == key)) or 0)


async def test_forget_deletes_every_row_about_the_user_after_confirmation(
    fake_api: FakeTelegramApi,
    running_bot: RunningBot,
    user_id: int,
    lesion_jpegs: dict[str, bytes],
) -> None:
    """Consultations, follow-ups, reminders and the user row are all really gone."""
    _, row = await assessed_photo(fake_api, running_bot, user_id, phone_photo(lesion_jpegs), 1)
    key = running_bot.key(user_id)
    # A medium or high result already scheduled its follow-up; a low one gets one here,
    # so there is one either way, whatever the model says about this photo.
    if await count(running_bot, FollowUp, key) == 0:
        async with running_bot.application.bot_data.runtime.sessions.begin() as session:
            session.add(FollowUp(consultation_id=row.id, user_key=row.user_key, due_at=utc_now()))
    fake_api.push_text(user_id, "/remind monthly")
    await last_text(fake_api, user_id, 2)
    assert await count(running_bot, Consultation, key) == 1
    assert await count(running_bot, FollowUp, key) == 1
    assert await count(running_bot, User, key) == 1

    fake_api.push_text(user_id, "/forget")
    confirm = await last_text(fake_api, user_id, 3)
    assert confirm.text == EN.text("forget.confirm")
    assert confirm.buttons == [("Yes, delete everything", "forget:yes"), ("Cancel", "forget:no")]
    assert await count(running_bot, Consultation, key) == 1  # nothing before the button

    done = await press(fake_api, user_id, confirm, "forget:yes")
    assert done.method == "editMessageText"
    assert done.text == EN.text("forget.done")
    for model in (Consultation, FollowUp, User):
        assert await count(running_bot, model, key) == 0, model

    # Gone means gone: the next photo asks for consent again.
    send_photo(fake_api, user_id, phone_photo(lesion_jpegs))
    prompt = await last_text(fake_api, user_id, 4)
    assert prompt.text == EN.consent_required()


async def test_forget_can_be_cancelled(
    fake_api: FakeTelegramApi, running_bot: RunningBot, user_id: int
) -> None:
    """Cancel deletes nothing."""
    fake_api.push_text(user_id, "/forget")
    confirm = await last_text(fake_api, user_id, 1)
    done = await press(fake_api, user_id, confirm, "forget:no")
    assert done.text == EN.text("forget.cancelled")
    assert await running_bot.user(user_id) is not None


async def test_old_consultations_are_purged_after_the_retention_period(
    running_bot: RunningBot, user_id: int
) -> None:
    """Records older than RETENTION_DAYS (12 months) go when the scheduled job runs."""
    runtime = running_bot.application.bot_data.runtime
    key = running_bot.key(user_id)
    async with runtime.sessions.begin() as session:
        session.add(Consultation(user_key=key, input_kind="photo", status="assessed"))
    later = utc_now() + timedelta(days=runtime.settings.retention_days + 1)
    await send_due(running_bot.application.bot, runtime, later)
    assert await count(running_bot, Consultation, key) == 0
